# frozen_string_literal: true

# Medium file (1.0 s).
RSpec.describe "Product" do
  it "formats the price in cents" do
    simulate_work(1.0)
    expect(format("%.2f", 1999 / 100.0)).to eq("19.99")
  end
end
