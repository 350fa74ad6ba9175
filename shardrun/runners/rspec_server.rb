# shardrun's warm RSpec runner: one Ruby process that runs batch after batch.
#
# Started by a shardrun worker (shardrun/warm.py) instead of one `rspec` process per
# batch, so the interpreter start, `require "rspec/core"` and the suite's own boot
# (spec_helper, rails_helper: `require`d once, then cached) are paid once per worker,
# not once per batch. Spec files themselves are `load`ed again by every batch, as rspec
# does. This is what knapsack_pro's Queue Mode does with RSpec::Core::Runner.
#
# Protocol: one JSON request per line on the fd in SHARDRUN_REQUEST_FD,
#   {"args": [rspec arguments], "log": "path of this batch's output"}
# one JSON reply per line on the fd in SHARDRUN_REPLY_FD, {"exit": status}.
# stdout and stderr go to the batch's log while it runs. EOF on the requests ends it.

require "json"
require "rspec/core"

requests = IO.new(Integer(ENV.delete("SHARDRUN_REQUEST_FD")), "r")
replies = IO.new(Integer(ENV.delete("SHARDRUN_REPLY_FD")), "w")
[requests, replies].each { |io| io.close_on_exec = true }
replies.sync = true

# The state one batch leaves behind that the next must not see: loaded example groups,
# filters, the reporter and its formatters (RSpec.clear_examples), and a quit request
# from --fail-fast.
def reset_rspec
  RSpec.clear_examples
  world = RSpec.world
  world.wants_to_quit = false if world.respond_to?(:wants_to_quit=)
  world.rspec_is_quitting = false if world.respond_to?(:rspec_is_quitting=)
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
      RSpec::Core::Runner.run(request.fetch("args"), $stderr, $stdout)
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
