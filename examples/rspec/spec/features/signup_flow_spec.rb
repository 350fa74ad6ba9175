# frozen_string_literal: true

# Slow file (3.0 s): sign-up in a browser, one second per page.
RSpec.describe "Signup flow" do
  it "signs up with an email address" do
    simulate_work(1.0)
    expect("ada@example.com".split("@").last).to eq("example.com")
  end

  it "confirms the email address" do
    simulate_work(1.0)
    expect(["3f9a2c"].pack("H*").bytesize).to eq(3) # the confirmation token
  end

  it "rejects a taken username" do
    simulate_work(1.0)
    expect(%w[ada grace]).to include("ada")
  end
end
