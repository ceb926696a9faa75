// Runs node-pg-migrate's runner (which takes its advisory lock,
// PG_MIGRATE_LOCK_ID, with pg_try_advisory_lock) on the migrations in
// LKT_DIR, recording them in LKT_TABLE. With LKT_HOLD=1 the migration
// holds (common.mjs hold) while the runner holds its lock.
import { runner } from "node-pg-migrate";
import { env, hold, run } from "./common.mjs";

if (process.env.LKT_HOLD === "1") globalThis.lktHold = hold;

run(async () => {
  await runner({
    databaseUrl: env("LKT_URL"),
    dir: env("LKT_DIR"),
    migrationsTable: env("LKT_TABLE"),
    direction: "up",
    count: Infinity,
    log: () => {},
  });
});
