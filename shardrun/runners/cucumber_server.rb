# shardrun's Cucumber runner: one Ruby process that runs the batches a worker sends it.
#
# Started by a shardrun worker (shardrun/work/warm.py) as `ruby cucumber_server.rb` in the
# project root. The prewarm requires Cucumber's libraries (Ruby, cucumber, gherkin: the
# part every batch shares); each batch then runs in a child forked from that process (the
# default) or in this process (`--runners reuse`), as rspec_server.rb does (ruby_server.rb
# holds the shared loop). The suite's own support code (`features/support/env.rb`, step
# definitions) is loaded by Cucumber in each batch, as every `cucumber` run loads it.
#
# A batch's arguments are cucumber's own command line: the units, feature files or one
# scenario by `file:line` (an outline's example row by the row's line), then the runner
# arguments. A formatter registered here (`--format ShardrunCucumberEvents`) reports every
# scenario as it starts and finishes, and a filter placed after Cucumber's own (tags,
# names, lines) reports what the batch will run before it starts. Test names are those of
# `cucumber --format junit`: the feature's name as classname, the scenario's name (with
# " (outline example : | a | b |)" for a row) as name. A scenario that is undefined or
# pending is skipped (failed under `--strict`), as Cucumber's JUnit says.
#
# Cucumber rescues every exception in a step, `exit` included: such a scenario fails, as it
# does in a serial run. `exit!` or a signal ends the process: the scenario is an error.
# `--fail-fast` in the runner arguments is dropped per batch (shardrun's own stops a build).
#
# `ruby cucumber_server.rb --list OUT FILE...` writes the scenario ids of the files to OUT
# as JSON ({"tests": [...], "errors": [...]}), from a dry run, for splitting.

require "json"
require "stringio"
require "cucumber"
require "cucumber/cli/main"
require "cucumber/formatter/junit"
require_relative "ruby_server"

module ShardrunCucumber
  FAIL_FAST = "--fail-fast"

  class << self
    attr_accessor :listing, :finished
  end

  def self.test_id(test_case)
    ShardrunServer.path(test_case.location.to_s)
  end

  # Buffers the batch's test cases after Cucumber's own filters, reports them as collected
  # (or, for `--list`, records their ids), then passes them on to be run.
  class CollectFilter < Cucumber::Core::Filter.new
    def test_case(test_case)
      (@test_cases ||= []) << test_case
      self
    end

    def done
      cases = @test_cases || []
      ids = cases.map { |test_case| ShardrunCucumber.test_id(test_case) }
      if ShardrunCucumber.listing
        ShardrunCucumber.listing.concat(ids)
      else
        ShardrunServer.events.emit("e" => "collected", "tests" => ids)
      end
      cases.each { |test_case| test_case.describe_to(receiver) }
      receiver.done
      self
    end
  end

  # The events formatter: a new-style Cucumber formatter (one argument, the configuration).
  class Events
    def initialize(config)
      @config = config
      config.filters << CollectFilter.new
      return if ShardrunCucumber.listing

      config.on_event(:before_test_case) { |event| started(event.test_case) }
      config.on_event(:after_test_case) { |event| finished(event.test_case, event.result) }
      config.on_event(:finished_testing) { |_event| ShardrunCucumber.finished = true }
    end

    def started(test_case)
      names = Cucumber::Formatter::NameBuilder.new(test_case)
      ShardrunServer.events.emit(
        "e" => "start", "id" => ShardrunCucumber.test_id(test_case),
        "file" => ShardrunServer.path(test_case.location.file), "line" => test_case.location.line,
        "name" => "#{names.scenario_name}#{names.name_suffix}",
        "classname" => test_case.feature.name.to_s
      )
    end

    def finished(test_case, result)
      seconds = Cucumber::Formatter::ResultBuilder.new(result).test_case_duration
      event = { "e" => "finish", "id" => ShardrunCucumber.test_id(test_case),
                "outcome" => outcome(result), "seconds" => seconds.to_f }
      if result.respond_to?(:exception) && result.exception
        error = result.exception
        event["message"] = ShardrunServer.text("#{error.message} (#{error.class})")
        event["type"] = error.class.name.to_s
        event["details"] = ShardrunServer.text([event["message"], *error.backtrace.to_a].join("\n"))
      elsif !result.passed?
        event["message"] = result.to_sym.to_s
      end
      ShardrunServer.events.emit(event)
    end

    def outcome(result)
      return "passed" if result.passed?

      result.ok?(@config.strict?) ? "skipped" : "failed"
    end
  end

  # Cucumber ends a run with `kernel.exit(status)`: kept, not raised, so the batch answers.
  class StatusKernel
    attr_reader :status

    def exit(status = true)
      @status = status == true ? 0 : (status == false ? 1 : Integer(status))
    end

    def exit!(status = true)
      ::Kernel.exit!(status)
    end
  end

  def self.prewarm(_args)
    0
  end

  def self.reset
    self.finished = false
  end

  def self.command_line(args)
    formats = args.any? { |arg| %w[-f --format].include?(arg) || arg.start_with?("--format=") }
    [*args, *(formats ? [] : %w[--format progress]),
     "--format", "ShardrunCucumber::Events", "--out", File::NULL]
  end

  def self.run_batch(args)
    self.finished = false
    if args.include?(FAIL_FAST)
      ShardrunServer.events.emit("e" => "note", "text" => "the project's cucumber --fail-fast was ignored per batch")
      args -= [FAIL_FAST]
    end
    kernel = StatusKernel.new
    errors = StringIO.new
    Cucumber::Cli::Main.new(command_line(args), nil, $stdout, errors, kernel).execute!
    $stderr.write(errors.string)
    unless finished
      # A bad option or a support file that failed to load: Cucumber ran nothing.
      message = ShardrunServer.first_line(errors.string)
      ShardrunServer.events.emit("e" => "batch_error", "details" => ShardrunServer.text(errors.string),
                                 "message" => "cucumber stopped before running the batch " \
                                              "(exit #{kernel.status}): #{message}")
    end
    kernel.status || 2
  end

  # Writes the scenario ids of `files` to `out` (JSON), from a dry run.
  def self.list(out, files)
    self.listing = []
    kernel = StatusKernel.new
    errors = StringIO.new
    Cucumber::Cli::Main.new([*files, "--dry-run", "--format", "ShardrunCucumber::Events",
                             "--out", File::NULL], nil, StringIO.new, errors, kernel).execute!
    problems = kernel.status.to_i > 1 ? [ShardrunServer.first_line(errors.string)] : []
    File.write(out, JSON.generate("tests" => listing, "errors" => problems))
  end
end

if ARGV.first == "--list"
  ShardrunCucumber.list(ARGV[1], ARGV[2..])
  exit!(0)
end
ShardrunServer.serve(ShardrunCucumber)
