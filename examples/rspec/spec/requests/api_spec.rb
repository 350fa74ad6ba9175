# frozen_string_literal: true

# Slow file (1.5 s): three request-like examples of 0.5 s each.
RSpec.describe "API" do
  %w[users orders products].each do |resource|
    it "lists #{resource}" do
      simulate_work(0.5)
      expect("/api/#{resource}").to start_with("/api/")
    end
  end
end
