# frozen_string_literal: true

# Slowest file (2.0 s): the planner should give it a shard of its own.
RSpec.describe "User" do
  it "validates the email address" do
    simulate_work(0.5)
    expect("ada@example.com").to match(/\A[^@\s]+@[^@\s]+\z/)
  end

  it "rejects a blank name" do
    simulate_work(0.5)
    expect("".strip).to be_empty
  end

  it "builds a display name from first and last name" do
    simulate_work(1.0)
    expect(["Ada", "Lovelace"].join(" ")).to eq("Ada Lovelace")
  end
end
