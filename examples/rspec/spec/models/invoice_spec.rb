# frozen_string_literal: true

# Medium file (1.2 s): four short model examples of 0.3 s each.
RSpec.describe "Invoice" do
  it "numbers invoices per year" do
    simulate_work(0.3)
    expect(format("2025-%05d", 7)).to eq("2025-00007")
  end

  it "adds VAT" do
    simulate_work(0.3)
    expect(Rational("49.00") * Rational("1.20")).to eq(Rational("58.8"))
  end

  it "rounds to cents" do
    simulate_work(0.3)
    expect(10.004.round(2)).to eq(10.0)
  end

  it "is due in thirty days" do
    simulate_work(0.3)
    expect(1 + 30).to eq(31)
  end
end
