# frozen_string_literal: true

# Slow file (2.0 s): exports that render a whole report.
RSpec.describe "ReportExport" do
  it "exports CSV" do
    simulate_work(1.0)
    rows = [%w[order total], %w[42 49.00]]
    expect(rows.map { |row| row.join(",") }[1]).to eq("42,49.00")
  end

  it "exports a monthly summary" do
    simulate_work(1.0)
    expect([1200, 2500, 1200].sum / 3).to eq(1633)
  end
end
