# frozen_string_literal: true

# Slow file (2.0 s): a payment gateway client against a stub that answers slowly.
RSpec.describe "PaymentGateway" do
  it "charges a card" do
    simulate_work(0.5)
    expect({ status: "paid" }[:status]).to eq("paid")
  end

  it "refunds a charge" do
    simulate_work(0.5)
    expect(4900 - 4900).to eq(0)
  end

  it "retries after a timeout" do
    simulate_work(0.5)
    expect([:timeout, :timeout, :paid].index(:paid)).to eq(2)
  end

  it "declines an expired card" do
    simulate_work(0.5)
    expect([2020, 1] <=> [2025, 6]).to eq(-1)
  end
end
