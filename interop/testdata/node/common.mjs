// Helpers shared by the tool scripts: the Go tests drive each script
// through stdin and stdout.
//
// A script prints "holding" when the tool holds its own lock and then
// waits for a line on stdin before it lets go; it prints "done" when the
// tool finished, and exits 1 with the tool's error on stderr otherwise.
import readline from "node:readline";

const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", () => {
  const w = waiting.shift();
  if (w) w();
});

// hold prints "holding" and resolves at the next line on stdin.
export function hold() {
  console.log("holding");
  return new Promise((resolve) => waiting.push(resolve));
}

export function env(name) {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
}

// run runs main, then prints "done" and exits 0, or prints the error and
// exits 1.
export function run(main) {
  main().then(
    () => {
      console.log("done");
      process.exit(0);
    },
    (err) => {
      console.error(String(err && err.stack ? err.stack : err));
      process.exit(1);
    },
  );
}
