# frozen_string_literal: true

# Medium file (1.0 s): syncing stock with a warehouse stub.
RSpec.describe "InventorySync" do
  it "decrements stock on a sale" do
    simulate_work(0.5)
    expect(10 - 2).to eq(8)
  end

  it "flags items out of stock" do
    simulate_work(0.5)
    expect({ "mug" => 0, "poster" => 3 }.select { |_, count| count.zero? }.keys).to eq(["mug"])
  end
end
