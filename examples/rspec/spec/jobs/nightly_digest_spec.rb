# frozen_string_literal: true

# Slow file (1.5 s): the nightly digest job, three runs of 0.5 s.
RSpec.describe "NightlyDigest" do
  it "collects yesterday's orders" do
    simulate_work(0.5)
    expect(%w[mon tue].select { |day| day == "mon" }).to eq(["mon"])
  end

  it "skips users who opted out" do
    simulate_work(0.5)
    expect(%w[ada grace] - %w[grace]).to eq(["ada"])
  end

  it "sends one mail per user" do
    simulate_work(0.5)
    expect({ "ada" => 3, "grace" => 1 }.size).to eq(2)
  end
end
