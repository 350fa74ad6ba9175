# frozen_string_literal: true

# Medium-fast file (0.8 s).
RSpec.describe "FormatHelper" do
  it "pads numbers" do
    simulate_work(0.4)
    expect(7.to_s.rjust(3, "0")).to eq("007")
  end

  it "truncates long strings" do
    simulate_work(0.4)
    expect("abcdefgh"[0, 5]).to eq("abcde")
  end
end
