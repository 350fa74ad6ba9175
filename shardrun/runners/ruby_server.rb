# What shardrun's Minitest and Cucumber runners share (minitest_server.rb,
# cucumber_server.rb): the loop that serves a worker's requests, the fork per batch, the
# events pipe, prctl. The structure is rspec_server.rb's; that file keeps its own copy so
# that the RSpec runner, already in use, did not change with this one.
#
# A framework module passes itself to `ShardrunServer.serve(framework)` and answers:
#   prewarm(args) -> exit status     boot the suite (test_helper, support files), no test
#   run_batch(args) -> exit status   one batch; every test reported as it happens
#   reset                            after an in-process batch (`--runners reuse`)
#
# Requests and events are those of runners/pytest_server.py (its docstring lists them).

require "fiddle"
require "json"

module ShardrunServer
  # Failure texts are capped per test (the tail is kept), as in the other runners.
  MAX_TEXT_CHARS = 64 * 1024
  ANSI = /\e\[[\d;]*m/
  # prctl(2): a signal when this process's parent dies; the reaper of orphans below it.
  PR_SET_PDEATHSIG = 1
  PR_SET_CHILD_SUBREAPER = 36

  class Events
    def initialize(io)
      @io = io
    end

    # One write of one line: the worker never sees half an event unless the process dies.
    def emit(event)
      @io.write(JSON.generate(event) + "\n")
    end
  end

  class << self
    attr_accessor :events
  end

  def self.text(value)
    text = value.to_s.dup.force_encoding(Encoding::UTF_8).scrub("\uFFFD").gsub(ANSI, "")
    text.length > MAX_TEXT_CHARS ? "..." + text[-MAX_TEXT_CHARS..] : text
  end

  def self.path(file)
    file.to_s.sub(%r{\A\./}, "")
  end

  # A path relative to the directory the runner started in (the project root), as units are.
  def self.relative(file, root = Dir.pwd)
    absolute = File.expand_path(file.to_s, root)
    prefix = File.join(root, "")
    absolute.start_with?(prefix) ? absolute.delete_prefix(prefix) : path(file)
  end

  def self.first_line(text)
    text.to_s.lines.map(&:strip).reject(&:empty?).first.to_s
  end

  # One batch: its output in its log, its events, and how it ended. `done` only when the
  # framework ended by itself; an `exit` inside a test, or any exception, is an abort.
  def self.run_session(framework, args, log)
    $stdout.reopen(log, "a")
    $stderr.reopen($stdout)
    $stdout.sync = true
    $stderr.sync = true
    status = framework.run_batch(args)
    events.emit("e" => "done", "code" => status)
    status
  rescue SystemExit => e
    events.emit("e" => "abort", "reason" => "the process exited (exit #{e.status}) during the batch")
    e.status
  rescue Exception => e # rubocop:disable Lint/RescueException -- the batch must answer
    $stderr.puts("shardrun: #{e.class}: #{e.message}")
    $stderr.puts(e.backtrace.to_a.first(20))
    events.emit("e" => "abort", "reason" => "#{e.class}: #{first_line(e.message)}")
    2
  ensure
    $stdout.flush
  end

  def self.run_forked(framework, args, log)
    pid = Process.fork do
      prctl(PR_SET_PDEATHSIG, Signal.list.fetch("KILL")) # the batch ends with its runner
      events.emit("e" => "child", "pid" => Process.pid)
      status = 2
      begin
        status = run_session(framework, args, log)
      ensure
        $stdout.flush
        $stderr.flush
        exit!(Integer(status)) # not the boot's at_exit handlers (autorun): they are the parent's
      end
    end
    _, process_status = Process.wait2(pid)
    if process_status.signaled?
      { "e" => "exit", "signal" => process_status.termsig }
    else
      { "e" => "exit", "code" => process_status.exitstatus }
    end
  end

  # prctl(2), best effort: Linux only, nothing elsewhere.
  def self.prctl(option, value)
    int, long = Fiddle::TYPE_INT, Fiddle::TYPE_LONG
    function = Fiddle::Function.new(Fiddle::Handle::DEFAULT["prctl"], [int, long, long, long, long], int)
    function.call(option, value, 0, 0, 0)
  rescue StandardError, Fiddle::DLError
    nil
  end

  # Collect the adopted processes the worker killed after the last batch.
  def self.reap_orphans
    loop { break unless Process.wait(-1, Process::WNOHANG) }
  rescue Errno::ECHILD
    nil
  end

  def self.handle(framework, request)
    if request.key?("prewarm")
      $stdout.reopen(request.fetch("log"), "a")
      $stderr.reopen($stdout)
      status = begin
        framework.prewarm(request.fetch("prewarm"))
      rescue Exception => e # rubocop:disable Lint/RescueException -- logged; the batch reports it
        $stderr.puts("shardrun: #{e.class}: #{e.message}")
        1
      end
      $stdout.flush
      return { "e" => "exit", "code" => status, "prewarm" => true }
    end
    return run_forked(framework, request.fetch("args"), request.fetch("log")) if request["fork"]

    begin
      { "e" => "exit", "code" => Integer(run_session(framework, request.fetch("args"), request.fetch("log"))) }
    ensure
      framework.reset
    end
  end

  # Serve requests until EOF, then leave without running at_exit handlers a test file
  # registered (Minitest's autorun would run every loaded test once more).
  def self.serve(framework)
    requests = IO.new(Integer(ENV.delete("SHARDRUN_REQUEST_FD")), "r")
    replies = IO.new(Integer(ENV.delete("SHARDRUN_REPLY_FD")), "w")
    [requests, replies].each { |io| io.close_on_exec = true }
    replies.sync = true
    self.events = Events.new(replies)
    prctl(PR_SET_CHILD_SUBREAPER, 1) # what a batch leaves running stays in this tree
    root = Dir.pwd
    while (line = requests.gets)
      reap_orphans
      request = JSON.parse(line)
      Dir.chdir(root) # the units are relative to it, whatever a test did to the cwd
      events.emit(handle(framework, request))
    end
    $stdout.flush
    $stderr.flush
    exit!(0)
  end
end
