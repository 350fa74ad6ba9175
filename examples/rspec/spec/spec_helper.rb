# frozen_string_literal: true

# Plain RSpec, no gems: the suite exists so `shardrun run` has something real to split.
# Each example sleeps a known amount (see examples/README.md), so the timings shardrun
# records are predictable and a few files clearly dominate.

RSpec.configure do |config|
  config.expect_with :rspec do |expectations|
    expectations.include_chain_clauses_in_custom_matcher_descriptions = true
  end
  config.disable_monkey_patching!
  config.order = :defined
end

# Simulate work that takes `seconds` so the example's run_time is known in advance.
def simulate_work(seconds)
  sleep(seconds)
end
