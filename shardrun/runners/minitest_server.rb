# shardrun's Minitest runner: one Ruby process that runs the batches a worker sends it.
#
# Started by a shardrun worker (shardrun/work/warm.py) as `ruby minitest_server.rb`, in the
# project root. As `ruby -Itest` (and `bin/rails test`) do, `test/` and `lib/` go on the
# load path; a prewarm request requires `test/test_helper.rb` (a Rails app's boot) before
# the first batch exists. Each batch then runs in a child forked from that booted process
# (the default) or in this process (`--runners reuse`), exactly as rspec_server.rb does
# (ruby_server.rb holds the shared loop).
#
# A batch's arguments are units, then "--", then Minitest's own options (`--seed`, `-v`,
# `-n`/`-e` filters). A unit is a test file (`test/models/user_test.rb`) or one test by
# its id, `test/models/user_test.rb::UserTest#test_valid` (`FILE::CLASS#METHOD`, the
# class as Ruby names it, so `Admin::UserTest` or a `describe` block's "User::validity").
# The batch loads each unit's file (`load`: a file that fails to load is a `file_error` of
# that file and the other files still run), selects the tests of the units (narrowed by a
# `-n`/`-e` given in the runner arguments) and runs them with `Minitest.run`, with an exact
# `--name` filter appended last, so nothing else that was loaded runs. Minitest's autorun
# (`require "minitest/autorun"` in test files) is switched off: its at_exit handler would
# run every loaded test again when the process ends. The JUnit names of a test are its
# class (classname) and its method (name).
#
# Every test is reported as it starts and finishes by a Minitest reporter (prerecord,
# record), never from a report written at the end. The events are those of
# runners/pytest_server.py.
#
# `ruby minitest_server.rb --list OUT FILE...` loads the files and writes their test ids
# to OUT as JSON ({"tests": [...], "errors": [...]}), for splitting a slow file.

require "json"
require "minitest"
require_relative "ruby_server"

module ShardrunMinitest
  UNIT_SEPARATOR = "::"

  # The reporter that turns Minitest's prerecord/record into start/finish events.
  class Reporter < Minitest::AbstractReporter
    def initialize(tests)
      super()
      @tests = tests # "Class#method" => {"id", "file", "line"}
    end

    def prerecord(klass, name)
      test = @tests["#{klass.name}##{name}"]
      return unless test

      ShardrunServer.events.emit("e" => "start", "id" => test["id"], "file" => test["file"],
                                 "line" => test["line"], "name" => name.to_s,
                                 "classname" => klass.name.to_s)
    end

    def record(result)
      test = @tests["#{result.klass}##{result.name}"]
      return unless test

      event = { "e" => "finish", "id" => test["id"], "outcome" => ShardrunMinitest.outcome(result),
                "seconds" => result.time.to_f }
      failure = result.failure
      if failure
        cause = failure.respond_to?(:error) ? failure.error : failure
        message = failure.is_a?(Minitest::UnexpectedError) ? "#{cause.class}: #{cause.message}" : failure.message
        event["message"] = ShardrunServer.text(message)
        event["type"] = cause.class.name.to_s
        details = [failure.message, *ShardrunMinitest.backtrace(cause)]
        event["details"] = ShardrunServer.text(details.join("\n"))
      end
      ShardrunServer.events.emit(event)
    end
  end

  # The test's own frames: neither Minitest's nor this runner's.
  def self.backtrace(error)
    Minitest.filter_backtrace(error.backtrace.to_a).reject { |line| line.start_with?(__dir__) }
  end

  def self.outcome(result)
    return "skipped" if result.skipped?
    return "error" if result.error?

    result.passed? ? "passed" : "failed"
  end

  # Test files loaded in this process, and the file each runnable class belongs to. A
  # reused runner loads a file once (as pytest caches a module); a fork starts empty.
  @loaded = {}
  @file_of_class = {}
  @created_by = {}

  def self.setup
    %w[lib test].reverse_each do |dir|
      path = File.expand_path(dir)
      $LOAD_PATH.unshift(path) unless $LOAD_PATH.include?(path)
    end
    # Autorun's at_exit would run every loaded test again as the process ends.
    Minitest.class_variable_set(:@@installed_at_exit, true)
    # runnable_methods shuffles with it; Minitest.run sets the batch's own (--seed).
    Minitest.seed ||= Random.new_seed % 0xFFFF
  end

  def self.prewarm(_args)
    setup
    require "test_helper" if File.file?("test/test_helper.rb")
    0
  end

  def self.reset; end

  # Loads `file` once (not again when another test file already required it); raises what
  # its load raised. The classes its load created are its own unless Ruby knows better.
  def self.load_file(file)
    return if @loaded[file]

    path = File.expand_path(file)
    before = Minitest::Runnable.runnables.dup
    begin
      load path unless $LOADED_FEATURES.include?(path)
    ensure
      (Minitest::Runnable.runnables - before).each { |klass| @created_by[klass] ||= file }
    end
    $LOADED_FEATURES << path # a later `require_relative` of it must not load it twice
    @loaded[file] = true
  end

  # The file a class is written in: where its constant is defined (a file that requires
  # another test file does not take that file's classes), else (a `describe` block) the
  # file whose load created it.
  def self.file_of(klass)
    return @file_of_class[klass] if @file_of_class.key?(klass)

    location = begin
      Object.const_source_location(klass.name)
    rescue NameError, TypeError
      nil
    end
    known = location && !location.empty?
    @file_of_class[klass] = known ? ShardrunServer.relative(location[0]) : @created_by[klass]
  end

  # The tests of `file`, sorted: {"Class#method" => test}.
  def self.tests_of(file)
    load_file(file)
    tests = {}
    Minitest::Runnable.runnables.each do |klass|
      next if klass.name.nil? || file_of(klass) != file

      klass.runnable_methods.sort.each do |method|
        location = klass.instance_method(method).source_location rescue nil
        line = location && ShardrunServer.relative(location[0]) == file ? location[1] : nil
        tests["#{klass.name}##{method}"] = { "id" => "#{file}#{UNIT_SEPARATOR}#{klass.name}##{method}",
                                             "file" => file, "line" => line }
      end
    end
    tests
  end

  # Loads each unit's file; a file that does not load is an error of that file.
  def self.select(units)
    selected = {}
    tests_by_file = {}
    units.each do |unit|
      file, _, name = unit.partition(UNIT_SEPARATOR)
      file = ShardrunServer.path(file)
      unless tests_by_file.key?(file)
        tests_by_file[file] = begin
          tests_of(file)
        rescue Exception => e # rubocop:disable Lint/RescueException -- SyntaxError, LoadError, exit
          raise if e.is_a?(SignalException)

          file_error(file, e)
          {}
        end
      end
      tests = tests_by_file[file]
      selected.merge!(name.empty? ? tests : tests.slice(name))
    end
    selected
  end

  def self.file_error(file, error)
    text = ShardrunServer.text(["#{error.class}: #{error.message}", *error.backtrace.to_a.first(20)].join("\n"))
    $stderr.puts("shardrun: #{file} failed to load: #{text}")
    ShardrunServer.events.emit("e" => "file_error", "file" => file,
                               "message" => "#{file} failed to load: #{error.class}: " \
                                            "#{ShardrunServer.first_line(error.message)}",
                               "details" => text)
  end

  # Minitest's own -n/-e filters from the runner arguments, applied as Minitest would.
  def self.narrowed(selected, options)
    parsed = Minitest.process_args(options.dup)
    keep = pattern(parsed[:filter])
    drop = pattern(parsed[:exclude])
    selected.select do |name, _|
      method = name.split("#", 2).last
      (keep.nil? || keep === method || keep === name) && !(drop && (drop === method || drop === name))
    end
  end

  def self.pattern(value)
    return nil if value.nil?

    value.is_a?(String) && value =~ %r{\A/(.*)/\z} ? Regexp.new(Regexp.last_match(1)) : value
  end

  def self.run_batch(args)
    setup
    separator = args.index("--") || args.length
    units, options = args[0...separator], args[(separator + 1)..] || []
    selected = narrowed(select(units), options)
    ShardrunServer.events.emit("e" => "collected", "tests" => selected.values.map { |t| t["id"] })
    exact = selected.keys.map { |name| Regexp.escape(name) }.join("|")
    Minitest.load_plugins
    Minitest.extensions << "shardrun" unless Minitest.extensions.include?("shardrun")
    @reporter = Reporter.new(selected)
    passed = Minitest.run([*options, "--name", "/\\A(?:#{exact})\\z/"])
    passed ? 0 : 1
  end

  class << self
    attr_reader :reporter
  end

  # Writes the test ids of `files` to `out` (JSON), for splitting.
  def self.list(out, files)
    setup
    require "test_helper" if File.file?("test/test_helper.rb")
    errors = []
    ids = files.flat_map do |file|
      tests_of(ShardrunServer.path(file)).values.map { |test| test["id"] }
    rescue Exception => e # rubocop:disable Lint/RescueException -- reported, not raised
      raise if e.is_a?(SignalException)

      errors << "#{file}: #{e.class}: #{ShardrunServer.first_line(e.message)}"
      []
    end
    File.write(out, JSON.generate("tests" => ids, "errors" => errors))
  end
end

module Minitest
  # Minitest calls plugin_NAME_init for each extension as a run starts.
  def self.plugin_shardrun_init(_options)
    reporter << ShardrunMinitest.reporter if ShardrunMinitest.reporter
  end
end

if ARGV.first == "--list"
  ShardrunMinitest.list(ARGV[1], ARGV[2..])
  $stdout.flush
  exit!(0)
end
ShardrunServer.serve(ShardrunMinitest)
