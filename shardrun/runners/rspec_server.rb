# shardrun's RSpec runner: one Ruby process that runs the batches a worker sends it.
#
# Started by a shardrun worker (shardrun/work/warm.py). It requires rspec-core once and, with
# a prewarm request, the suite's own boot (`.rspec`'s `--require spec_helper` or
# `rails_helper`: the app) before the first batch exists. Each batch then runs one of
# two ways:
# - "fork" (the default): in a child forked from the booted process. The boot is paid
#   once per worker, yet every batch starts from the same state, as Spring does: no
#   example group, constant, shared example group or configuration change of one batch
#   is seen by the next (reloading spec files in one process, RSpec.clear_examples
#   style, changed outcomes on real suites), and a test that kills its process or hangs
#   takes only that child with it.
# - in this process, batch after batch (`--runners reuse`), as knapsack_pro's Queue Mode
#   does: cheapest, but state one batch leaves behind is seen by the next.
#
# Every example is reported as it happens, one JSON line on the reply pipe, by the
# ShardrunEventsFormatter below (not by a report written at the end, which an interrupted
# process writes with the interrupted example as passed). The events and the protocol are
# those of runners/pytest_server.py, whose docstring lists them.
#
# Early-stop settings (`--fail-fast` in .rspec, `config.fail_fast` in spec_helper) are
# shardrun's to decide: each batch runs all of its examples; shardrun's own --fail-fast
# stops the build.

require "fiddle"
require "json"
require "rspec/core"

module Shardrun
  # Failure texts are capped per example (the tail is kept): a failure message holding a
  # megabyte of diff must not make every event, and the merged report, that large.
  MAX_TEXT_CHARS = 64 * 1024
  LOAD_ERROR = /\A\s*An error occurred while loading (?<file>.+?)\.(?: |$)/
  LOAD_EXIT = /\A\s*While loading (?<file>.+?) an `exit`/
  OUTSIDE_EXAMPLES = /\A\s*An error occurred/
  ANSI = /\e\[[\d;]*m/

  class Events
    def initialize(io)
      @io = io
    end

    def emit(event)
      @io.write(JSON.generate(event) + "\n")
    end
  end

  def self.text(value)
    text = value.to_s.dup.force_encoding(Encoding::UTF_8).scrub("\uFFFD").gsub(ANSI, "")
    text.length > MAX_TEXT_CHARS ? "..." + text[-MAX_TEXT_CHARS..] : text
  end

  def self.path(file)
    file.to_s.sub(%r{\A\./}, "")
  end

  def self.test_id(example)
    path(example.id)
  end

  def self.file_of(id)
    id.sub(/\[[\d:]+\]\z/, "")
  end

  def self.first_line(text)
    text.to_s.lines.map(&:strip).reject(&:empty?).first.to_s
  end

  class << self
    attr_accessor :events, :outside_errors, :frameworks_known
  end
end

# Registered on the command line of every batch (`--format ShardrunEventsFormatter`).
class ShardrunEventsFormatter
  RSpec::Core::Formatters.register self, :start, :example_group_started,
                                   :example_group_finished, :example_started,
                                   :example_passed, :example_failed, :example_pending, :message

  def initialize(_output)
    @events = Shardrun.events
    @current_file = nil
    @group_started = nil
  end

  def start(_notification)
    world = RSpec.world
    groups = world.ordered_example_groups.flat_map(&:descendants)
    ids = groups.flat_map { |group| world.filtered_examples[group] }.map { |e| Shardrun.test_id(e) }
    @events.emit("e" => "collected", "tests" => ids)
  end

  # An error in an after(:context) hook is reported outside of any example: it belongs
  # to the file of the top-level group that was running.
  def example_group_started(notification)
    group = notification.group
    return unless group.top_level?

    @current_file = Shardrun.file_of(Shardrun.path(group.id))
    @group_started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # What the file's top-level group took, its before(:context) and after(:context) hooks
  # included (`let_it_be`, records created once per file): an example's run time leaves
  # them out, so a file that spends seconds there would be planned as if it took none.
  def example_group_finished(notification)
    return unless notification.group.top_level?

    if @current_file && @group_started
      seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - @group_started
      @events.emit("e" => "file_time", "file" => @current_file, "seconds" => seconds)
    end
    @current_file = nil
    @group_started = nil
  end

  def example_started(notification)
    example = notification.example
    id = Shardrun.test_id(example)
    @events.emit("e" => "start", "id" => id, "file" => Shardrun.file_of(id),
                 "line" => example.metadata[:line_number], "name" => example.full_description,
                 "classname" => classname(example))
  end

  def example_passed(notification)
    finish(notification.example, "passed")
  end

  def example_pending(notification)
    example = notification.example
    finish(example, "skipped", "message" => Shardrun.text(example.execution_result.pending_message))
  end

  def example_failed(notification)
    exception = notification.example.execution_result.exception
    details = [notification.message_lines.join("\n"), notification.formatted_backtrace.join("\n")]
    finish(notification.example, "failed",
           "message" => Shardrun.text(exception.to_s), "type" => exception.class.name.to_s,
           "details" => Shardrun.text(details.join("\n")))
  end

  # Errors outside of examples: a spec file that fails to load (the batch then runs no
  # example at all), a failing after(:context) hook, a before(:suite) hook.
  def message(notification)
    text = Shardrun.text(notification.message)
    match = Shardrun::LOAD_ERROR.match(text) || Shardrun::LOAD_EXIT.match(text)
    if match
      file_error(Shardrun.path(match[:file]), text)
    elsif Shardrun::OUTSIDE_EXAMPLES.match?(text)
      if @current_file
        file_error(@current_file, text)
      else
        Shardrun.outside_errors += 1
        @events.emit("e" => "batch_error", "message" => Shardrun.first_line(text), "details" => text)
      end
    end
  end

  private

  def file_error(file, text)
    Shardrun.outside_errors += 1
    @events.emit("e" => "file_error", "file" => file, "message" => Shardrun.first_line(text),
                 "details" => text)
  end

  # The name again: a one-liner (`it { is_expected.to eq 2 }`, `its(:x)`) gets the
  # description RSpec generates as it runs, so only now is it the name a serial run shows.
  def finish(example, outcome, extra = {})
    seconds = example.execution_result.run_time.to_f
    @events.emit({ "e" => "finish", "id" => Shardrun.test_id(example), "outcome" => outcome,
                   "seconds" => seconds, "name" => example.full_description }.merge(extra))
  end

  # As rspec_junit_formatter spells it: the path of the file of the example's top-level
  # group, the spec file that collected it (an example of a shared example group written
  # in spec/support/ belongs to the spec file that includes the group).
  def classname(example)
    metadata = example.metadata[:example_group]
    metadata = metadata[:parent_example_group] while metadata[:parent_example_group]
    metadata[:file_path].to_s.sub(%r{\.[^/]*\z}, "").tr("/", ".").gsub(/\A\.+|\.+\z/, "")
  end
end

module Shardrun
  # The state one batch leaves behind that the next must not see when batches share a
  # process (`reuse`): loaded example groups, filters, the reporter and its formatters
  # (RSpec.clear_examples), a quit request, and what clear_examples leaves holding the
  # old batch (rspec-core #2767 and #2987), so memory and open files stay flat.
  def self.reset_rspec
    close_formatter_outputs
    RSpec.clear_examples
    world = RSpec.world
    world.wants_to_quit = false if world.respond_to?(:wants_to_quit=)
    world.rspec_is_quitting = false if world.respond_to?(:rspec_is_quitting=)
    world.prepare_example_filtering if world.respond_to?(:prepare_example_filtering)
    RSpec::Core::AnonymousExampleGroup.examples.clear if defined?(RSpec::Core::AnonymousExampleGroup)
    registry = world.shared_example_group_registry.instance_variable_get(:@shared_example_groups)
    registry&.delete_if { |context, _| context.is_a?(Class) && context < RSpec::Core::ExampleGroup }
  end

  # `--out FILE` (in the project's runner arguments) opens a file per formatter that
  # nothing closes: the rspec command exits instead. One per batch would reach the
  # open-file limit within a run.
  def self.close_formatter_outputs
    RSpec.configuration.formatters.each do |formatter|
      output = formatter.respond_to?(:output) ? formatter.output : nil
      next unless output.is_a?(File) && !output.closed?
      next if [$stdout, $stderr].include?(output) || output.fileno <= 2

      output.close
    end
  end

  # Applies the options as a batch would (.rspec, SPEC_OPTS, the runner arguments), so
  # `--require spec_helper` boots the app now. Loads no spec file. A failure is only
  # logged: the first batch requires the file again and reports the error as a batch.
  def self.prewarm(args)
    RSpec::Core::ConfigurationOptions.new(args).configure(RSpec.configuration)
    RSpec.world.wants_to_quit ? 1 : 0
  end

  # RSpec's own mock and expectation libraries. RSpec requires the ones the configuration
  # names at the first `describe`, which for a forked batch is in the child: 43 files,
  # 17 ms of every batch (a trivial spec file: 23 ms -> 6 ms) unless spec_helper loads
  # them itself (`mock_with :rspec do ... end` does). Which ones a project uses is known
  # only once its spec files have run (a helper they require may choose mocha or
  # `:nothing`, and loading rspec-mocks anyway would give every object `stub` and
  # `should_receive`, as a serial run would not), so the first forked batch that reaches
  # a `describe` tells this process what it used (`frameworks_used`), and this process
  # requires the same before the batches that follow.
  MOCKS_LIBRARY = "rspec/core/mocking_adapters/rspec" # requires rspec-mocks
  EXPECTATIONS_LIBRARY = "rspec/expectations"
  FRAMEWORK_LIBRARIES = [MOCKS_LIBRARY, EXPECTATIONS_LIBRARY].freeze

  def self.frameworks_used
    return nil unless RSpec::Core::ExampleGroup.class_variable_defined?(:@@example_groups_configured)

    config = RSpec.configuration
    mock = config.mock_framework
    used = []
    used << MOCKS_LIBRARY if mock.respond_to?(:framework_name) && mock.framework_name == :rspec
    used << EXPECTATIONS_LIBRARY if defined?(::RSpec::Matchers) && config.expectation_frameworks.include?(::RSpec::Matchers)
    used
  rescue StandardError
    nil
  end

  # In the child, at its end: one line per library, then an empty line (the end).
  def self.report_frameworks(writer)
    used = frameworks_used
    writer.write(used.map { |library| "#{library}\n" }.join + "\n") if used
  rescue StandardError
    nil
  end

  # In this process, after the child exited. Never a blocking read: a process the batch
  # forked may hold the pipe open. Only the known libraries are required.
  def self.learn_frameworks(reader)
    text = reader.read_nonblock(4096, exception: false)
    return unless text.is_a?(String) && text.end_with?("\n\n")

    (text.split("\n") & FRAMEWORK_LIBRARIES).each { |library| require library }
    self.frameworks_known = true
  rescue StandardError, ScriptError
    nil
  ensure
    reader.close
  end

  # RSpec::Core::Runner#run, with the project's fail-fast switched off between loading
  # the spec files (where spec_helper may set it) and running them.
  def self.run_batch(args)
    self.outside_errors = 0
    runner = RSpec::Core::Runner.new(RSpec::Core::ConfigurationOptions.new(args))
    runner.setup($stderr, $stdout)
    config = RSpec.configuration
    if config.fail_fast
      events.emit("e" => "note", "text" => "the project's fail_fast (#{config.fail_fast}) was ignored per batch")
      config.force(fail_fast: false) # a command-line option outranks `fail_fast =`
      config.fail_fast = false
    end
    status = if RSpec.world.wants_to_quit
               config.reporter.exit_early(runner.exit_code)
             else
               runner.run_specs(RSpec.world.ordered_example_groups)
             end
    report_unseen_errors
    status
  end

  # A `--require` (spec_helper, rails_helper) that fails to load is reported before the
  # batch's formatters exist, so the events formatter never hears of it; RSpec then runs
  # nothing and ends "cleanly". Never a batch that ran zero tests: an error of the batch.
  def self.report_unseen_errors
    return unless RSpec.world.non_example_failure && outside_errors.zero?

    events.emit("e" => "batch_error",
                "message" => "an error occurred outside of examples before any spec file " \
                             "loaded (a --require such as spec_helper failed); see the batch log")
  end

  # One batch: its output in its log, its events, and how it ended. `done` only when
  # RSpec ended by itself; an `exit` inside an example, or any exception, is an abort.
  def self.run_session(args, log)
    $stdout.reopen(log, "a")
    $stderr.reopen($stdout)
    $stdout.sync = true
    $stderr.sync = true
    status = run_batch(args)
    events.emit("e" => "done", "code" => status)
    status
  rescue SystemExit => e
    events.emit("e" => "abort", "reason" => "the process exited (exit #{e.status}) during the batch")
    e.status
  rescue Exception => e # rubocop:disable Lint/RescueException -- the batch must answer
    $stderr.puts("shardrun: #{e.class}: #{e.message}")
    $stderr.puts(e.backtrace.first(20))
    events.emit("e" => "abort", "reason" => "#{e.class}: #{first_line(e.message)}")
    2
  ensure
    $stdout.flush
  end

  def self.run_forked(args, log)
    reader, writer = IO.pipe unless frameworks_known
    pid = Process.fork do
      reader&.close
      prctl(PR_SET_PDEATHSIG, Signal.list.fetch("KILL")) # the batch ends with its runner
      events.emit("e" => "child", "pid" => Process.pid)
      status = 2
      begin
        status = run_session(args, log)
      ensure
        $stdout.flush
        $stderr.flush
        report_frameworks(writer) if writer
        exit!(Integer(status)) # not the boot's at_exit handlers: they run once, in the parent
      end
    end
    writer&.close
    _, process_status = Process.wait2(pid)
    learn_frameworks(reader) if reader
    if process_status.signaled?
      { "e" => "exit", "signal" => process_status.termsig }
    else
      { "e" => "exit", "code" => process_status.exitstatus }
    end
  end

  # prctl(2): a signal when this process's parent dies; the reaper of orphans below it.
  PR_SET_PDEATHSIG = 1
  PR_SET_CHILD_SUBREAPER = 36

  # prctl(2), best effort: Linux only, nothing elsewhere.
  def self.prctl(option, value)
    int, long = Fiddle::TYPE_INT, Fiddle::TYPE_LONG
    function = Fiddle::Function.new(Fiddle::Handle::DEFAULT["prctl"], [int, long, long, long, long], int)
    function.call(option, value, 0, 0, 0)
  rescue StandardError, Fiddle::DLError
    nil
  end

  # Become the reaper of what a batch leaves running: a process a forked child started is
  # re-parented here, not to init, so it stays in this runner's tree, where the worker
  # finds and kills it after the batch.
  def self.adopt_orphans
    prctl(PR_SET_CHILD_SUBREAPER, 1)
  end

  # Collect the adopted processes the worker killed after the last batch.
  def self.reap_orphans
    loop { break unless Process.wait(-1, Process::WNOHANG) }
  rescue Errno::ECHILD
    nil
  end

  def self.serve(requests)
    adopt_orphans
    root = Dir.pwd
    while (line = requests.gets)
      reap_orphans
      request = JSON.parse(line)
      Dir.chdir(root) # the units are relative to it, whatever a spec did to the cwd
      events.emit(handle(request))
    end
  end

  # A timestamp for bench/startup.py, as shardrun/phases.py writes them.
  def self.mark_phase(phase)
    path = ENV["SHARDRUN_PHASES"]
    File.write(path, format("%.6f %d %s\n", Time.now.to_f, Process.pid, phase), mode: "a") if path
  end

  def self.handle(request)
    if request.key?("prewarm")
      $stdout.reopen(request.fetch("log"), "a")
      $stderr.reopen($stdout)
      status = begin
        prewarm(request.fetch("prewarm"))
      rescue Exception => e # rubocop:disable Lint/RescueException -- logged; the batch reports it
        $stderr.puts("shardrun: #{e.class}: #{e.message}")
        1
      end
      $stdout.flush
      mark_phase("runner booted")
      return { "e" => "exit", "code" => status, "prewarm" => true }
    end
    return run_forked(request.fetch("args"), request.fetch("log")) if request["fork"]

    begin
      { "e" => "exit", "code" => Integer(run_session(request.fetch("args"), request.fetch("log"))) }
    ensure
      reset_rspec
    end
  end
end

requests = IO.new(Integer(ENV.delete("SHARDRUN_REQUEST_FD")), "r")
replies = IO.new(Integer(ENV.delete("SHARDRUN_REPLY_FD")), "w")
[requests, replies].each { |io| io.close_on_exec = true }
replies.sync = true
Shardrun.events = Shardrun::Events.new(replies)
Shardrun.serve(requests)
