# shardrun's warm RSpec runner: one Ruby process that runs batch after batch.
#
# Started by a shardrun worker (shardrun/warm.py) instead of one `rspec` process per
# batch, so the interpreter start, `require "rspec/core"` and the suite's own boot
# (spec_helper, rails_helper: `require`d once, then cached) are paid once per worker,
# not once per batch. Spec files themselves are `load`ed again by every batch, as rspec
# does. This is what knapsack_pro's Queue Mode does with RSpec::Core::Runner.
#
# Protocol: one JSON request per line on the fd in SHARDRUN_REQUEST_FD,
#   {"args": [rspec arguments], "log": "path of this batch's output"}, or
#   {"prewarm": [rspec arguments], "log": ...}: load what the suite requires, run nothing;
# one JSON reply per line on the fd in SHARDRUN_REPLY_FD, {"exit": status}, per request.
# stdout and stderr go to the request's log while it runs. EOF on the requests ends it.

require "json"
require "rspec/core"

requests = IO.new(Integer(ENV.delete("SHARDRUN_REQUEST_FD")), "r")
replies = IO.new(Integer(ENV.delete("SHARDRUN_REPLY_FD")), "w")
[requests, replies].each { |io| io.close_on_exec = true }
replies.sync = true

# The state one batch leaves behind that the next must not see: loaded example groups,
# filters, the reporter and its formatters (RSpec.clear_examples), and a quit request
# from --fail-fast. Then what clear_examples leaves holding the old batch, so that a
# runner's memory and open files stay flat over thousands of batches.
def reset_rspec
  close_formatter_outputs
  RSpec.clear_examples
  world = RSpec.world
  world.wants_to_quit = false if world.respond_to?(:wants_to_quit=)
  world.rspec_is_quitting = false if world.respond_to?(:rspec_is_quitting=)
  release_example_groups(world)
end

# `--out FILE` opens a file per formatter that nothing closes: the rspec command exits
# instead. Two per batch (JUnit, JSON) would reach the open-file limit within a run.
def close_formatter_outputs
  RSpec.configuration.formatters.each do |formatter|
    output = formatter.respond_to?(:output) ? formatter.output : nil
    next unless output.is_a?(File) && !output.closed?
    next if [$stdout, $stderr].include?(output) || output.fileno <= 2

    output.close
  end
end

# rspec-core keeps every batch's example group classes, and through them their examples,
# in three places RSpec.clear_examples leaves alone (rspec-core #2767 and #2987): the
# world's filtered examples by group, the suite hooks' anonymous group, and shared
# example groups registered inside a group. Measured on the bundled example: 0.1 MB and
# two groups per batch without this, flat with it.
def release_example_groups(world)
  world.prepare_example_filtering if world.respond_to?(:prepare_example_filtering)
  if defined?(RSpec::Core::AnonymousExampleGroup)
    RSpec::Core::AnonymousExampleGroup.examples.clear
  end
  registry = world.shared_example_group_registry.instance_variable_get(:@shared_example_groups)
  registry&.delete_if { |context, _| context.is_a?(Class) && context < RSpec::Core::ExampleGroup }
end

# Sent by a worker as it starts, before its first batch exists: applies the options as a
# batch would (.rspec, SPEC_OPTS, the runner arguments), so `--require spec_helper` or
# `rails_helper` boots the app now, while the coordinator is still planning. Loads no
# spec file. A failure here is only logged: the first batch requires the file again and
# reports the error as a batch would.
def prewarm(args)
  RSpec::Core::ConfigurationOptions.new(args).configure(RSpec.configuration)
  RSpec.world.wants_to_quit ? 1 : 0
end

root = Dir.pwd
while (line = requests.gets)
  request = JSON.parse(line)
  Dir.chdir(root) # the units are relative to it, whatever a spec did to the cwd
  $stdout.reopen(request.fetch("log"), "a")
  $stderr.reopen($stdout)
  $stdout.sync = true
  $stderr.sync = true
  status =
    begin
      if request.key?("prewarm")
        prewarm(request.fetch("prewarm"))
      else
        RSpec::Core::Runner.run(request.fetch("args"), $stderr, $stdout)
      end
    rescue SystemExit => e
      e.status
    rescue Exception => e # rubocop:disable Lint/RescueException -- the batch must answer
      $stderr.puts("shardrun: #{e.class}: #{e.message}")
      $stderr.puts(e.backtrace.first(20))
      2
    ensure
      reset_rspec
    end
  $stdout.flush
  replies.puts(JSON.generate("exit" => Integer(status)))
end
