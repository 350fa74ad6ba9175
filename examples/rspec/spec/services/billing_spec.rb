# frozen_string_literal: true

# Slow file (1.5 s) with nested groups, so example ids look like [1:2:1].
RSpec.describe "Billing" do
  context "with a monthly plan" do
    it "charges the monthly price" do
      simulate_work(0.75)
      expect(10 * 1).to eq(10)
    end
  end

  context "with a yearly plan" do
    it "applies the yearly discount" do
      simulate_work(0.75)
      expect(10 * 12 * 0.8).to eq(96.0)
    end
  end
end
