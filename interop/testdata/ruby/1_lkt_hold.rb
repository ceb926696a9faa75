# The migration rails_migrate.rb runs: it holds while LKT_HOLD=1.
class LktHold < ActiveRecord::Migration[6.1]
  def up
    return unless ENV["LKT_HOLD"] == "1"

    puts "holding"
    $stdin.gets
  end
end
