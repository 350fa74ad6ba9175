# frozen_string_literal: true

# Medium file (1.0 s).
RSpec.describe "Order" do
  it "sums its line items" do
    simulate_work(0.5)
    expect([3, 4, 5].sum).to eq(12)
  end

  it "is empty without line items" do
    simulate_work(0.5)
    expect([]).to be_empty
  end
end
