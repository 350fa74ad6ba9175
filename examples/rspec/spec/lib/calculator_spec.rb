# frozen_string_literal: true

# Fast file (~0.05 s). Holds the one example that fails on demand:
# SHARDRUN_EXAMPLE_FAIL=1 makes it fail, anything else lets it pass.
RSpec.describe "Calculator" do
  it "adds two numbers" do
    simulate_work(0.02)
    expect(2 + 3).to eq(5)
  end

  it "adds negative numbers" do
    expect(-2 + -3).to eq(-5)
  end

  it "multiplies" do
    simulate_work(0.02)
    expect(6 * 7).to eq(42)
  end

  it "fails only when SHARDRUN_EXAMPLE_FAIL=1" do
    expect(ENV.fetch("SHARDRUN_EXAMPLE_FAIL", "0")).not_to eq("1")
  end
end
