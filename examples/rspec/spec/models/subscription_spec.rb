# frozen_string_literal: true

# Medium file (1.0 s).
RSpec.describe "Subscription" do
  it "renews monthly" do
    simulate_work(0.5)
    expect((1 % 12) + 1).to eq(2)
  end

  it "cancels at the end of the period" do
    simulate_work(0.5)
    expect({ active: false }[:active]).to be(false)
  end
end
