# frozen_string_literal: true

# Slow file (2.5 s): five order endpoints of 0.5 s each.
RSpec.describe "Orders API" do
  [
    %w[GET /orders], %w[POST /orders], %w[GET /orders/42], %w[PATCH /orders/42],
    %w[DELETE /orders/42]
  ].each do |method, path|
    it "answers #{method} #{path}" do
      simulate_work(0.5)
      expect(%w[GET POST PATCH DELETE]).to include(method)
      expect(path).to start_with("/orders")
    end
  end
end
