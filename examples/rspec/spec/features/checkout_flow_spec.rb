# frozen_string_literal: true

# Slowest file (4.0 s): end-to-end checkout, each example standing in for a browser session.
# Few lines, long sleeps: sized by bytes, this file looks cheap; its timings show otherwise.
RSpec.describe "Checkout flow" do
  let(:cart) { { "mug" => 2, "poster" => 1 } }
  let(:prices_cents) { { "mug" => 1200, "poster" => 2500 } }

  it "adds items to the cart" do
    simulate_work(1.0)
    expect(cart.values.sum).to eq(3)
  end

  it "pays by card" do
    simulate_work(1.0)
    expect(cart.sum { |item, count| prices_cents[item] * count }).to eq(4900)
  end

  it "applies a coupon" do
    simulate_work(1.0)
    expect((4900 * 0.9).round).to eq(4410)
  end

  it "shows the receipt" do
    simulate_work(1.0)
    expect(format("Total: %.2f EUR", 4900 / 100.0)).to eq("Total: 49.00 EUR")
  end
end
