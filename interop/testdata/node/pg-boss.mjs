// Starts pg-boss on schema LKT_SCHEMA, which installs it there under its
// advisory lock (pg_advisory_xact_lock of the schema's key), then stops it.
import PgBoss from "pg-boss";
import { env, run } from "./common.mjs";

run(async () => {
  const boss = new PgBoss({
    connectionString: env("LKT_URL"),
    schema: env("LKT_SCHEMA"),
    application_name: env("LKT_APP"),
    supervise: false,
    schedule: false,
  });
  boss.on("error", (err) => console.error(String(err)));
  await boss.start();
  console.log("started");
  await boss.stop({ graceful: false, wait: true, close: true });
});
