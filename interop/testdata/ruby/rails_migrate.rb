# Runs ActiveRecord's migrations in LKT_DIR against LKT_URL, recording them
# in LKT_TABLE, as `rails db:migrate` does: the migrator takes Rails'
# advisory lock (pg_try_advisory_lock of MIGRATOR_SALT * crc32(database))
# on a connection of its own. With LKT_HOLD=1 the migration prints
# "holding" and waits for a line on stdin while the lock is held. Prints
# "done" at the end; a ConcurrentMigrationError exits 1 with its message.
require "active_record"

ActiveRecord::Base.establish_connection(ENV.fetch("LKT_URL"))
ActiveRecord::Base.schema_migrations_table_name = ENV.fetch("LKT_TABLE")
ActiveRecord::Base.internal_metadata_table_name = ENV.fetch("LKT_TABLE") + "_meta"
ActiveRecord::Migration.verbose = false
$stdout.sync = true

begin
  ActiveRecord::MigrationContext.new([ENV.fetch("LKT_DIR")], ActiveRecord::SchemaMigration).migrate
rescue ActiveRecord::ConcurrentMigrationError => e
  warn "#{e.class}: #{e.message.strip}"
  exit 1
end
puts "done"
