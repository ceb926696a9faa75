// Runs Knex's migrate.latest (which takes its lock, the row of
// knex_migrations_lock in schema LKT_SCHEMA, inside the migration
// transaction) on the migrations in LKT_DIR. With LKT_HOLD=1 the
// migration holds.
import knexPkg from "knex";
import { env, hold, run } from "./common.mjs";

if (process.env.LKT_HOLD === "1") globalThis.lktHold = hold;

run(async () => {
  const knex = knexPkg({ client: "pg", connection: env("LKT_URL"), pool: { min: 0, max: 2 } });
  try {
    await knex.migrate.latest({ directory: env("LKT_DIR"), schemaName: env("LKT_SCHEMA"), loadExtensions: [".cjs"] });
  } finally {
    await knex.destroy();
  }
});
