// Smoke test of the generated TypeScript SDK (openapi-typescript types + openapi-fetch)
// against a live Herd.
//
// Environment: HERD_URL (e.g. http://127.0.0.1:8080), HERD_TOKEN (a bearer token),
// optional HERD_SMOKE_NAME (cluster name, default `sdk-smoke-ts`), HERD_SMOKE_TIMEOUT
// (seconds to wait for the cluster and the delete task, default 300).
//
// Every Herd API call goes through the typed client. Prints one line per step; exits
// non-zero with a message on the first failed check. A cluster it created is deleted
// on the way out, pass or fail.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import createClient from "openapi-fetch";
import pg from "pg";
import { ClusterStatus, ErrorCode, TaskStatus } from "../out/typescript/herd.js";
import type { components, paths } from "../out/typescript/herd.js";

type ClusterDto = components["schemas"]["ClusterDto"];
type Problem = components["schemas"]["Problem"];
type TaskDto = components["schemas"]["TaskDto"];

const POLL_MS = 500;
const t0 = performance.now();

class CheckFailed extends Error {}

function step(msg: string): void {
  console.log(`[ts ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}`);
}

function check(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new CheckFailed(msg);
}

function env(name: string): string {
  const v = (process.env[name] ?? "").trim();
  check(v !== "", `${name} is not set`);
  return v;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const baseUrl = env("HERD_URL").replace(/\/+$/, "");
  const token = env("HERD_TOKEN");
  const name = process.env.HERD_SMOKE_NAME || "sdk-smoke-ts";
  const timeoutMs = Number(process.env.HERD_SMOKE_TIMEOUT || 300) * 1000;

  const herd = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
  let clusterId: string | undefined;
  let deleted = false;
  try {
    // a. datastores
    {
      const { data, error, response } = await herd.GET("/v1/datastores");
      check(data, `list datastores: ${response.status} ${JSON.stringify(error)}`);
      check(!data.next_cursor, `datastores: one page expected, got cursor ${data.next_cursor}`);
      const pgStore = data.items.find((d) => d.name === "postgresql");
      check(pgStore, `no postgresql datastore in ${data.items.map((d) => d.name).join(",")}`);
      const versions = pgStore.versions.map((v) => v.version);
      check(versions.includes("15"), `postgresql has no version 15: ${versions.join(",")}`);
      step(`datastores: postgresql ${versions.join(", ")}`);
    }

    // b. create
    {
      const { data, error, response } = await herd.POST("/v1/clusters", {
        body: { name, datastore: "postgresql", version: "15", flavor: "local.small", nodes: 1 },
      });
      check(response.status === 202 && data, `create cluster: ${response.status} ${JSON.stringify(error)}`);
      clusterId = data.cluster.id;
      step(`created cluster ${name} id=${clusterId} task=${data.task_id} (202)`);
    }
    const id = clusterId;

    // c. wait for active
    {
      const deadline = performance.now() + timeoutMs;
      let c: ClusterDto;
      for (;;) {
        const { data, error, response } = await herd.GET("/v1/clusters/{id}", { params: { path: { id } } });
        check(data, `get cluster: ${response.status} ${JSON.stringify(error)}`);
        c = data;
        if (c.status === ClusterStatus.active) break;
        check(c.status !== ClusterStatus.failed, `cluster failed: ${JSON.stringify(c.fault ?? "no fault recorded")}`);
        check(performance.now() < deadline, `cluster not active after ${timeoutMs / 1000}s (status ${c.status})`);
        await sleep(POLL_MS);
      }
      step(`cluster active (${c.nodes.length} node)`);
    }

    // d. credentials and SQL
    {
      const { data, error, response } = await herd.GET("/v1/clusters/{id}/credentials", {
        params: { path: { id } },
      });
      check(data, `credentials: ${response.status} ${JSON.stringify(error)}`);
      const uri = data.uri;
      check(typeof uri === "string" && uri.startsWith("postgres"), `credentials have no uri: ${JSON.stringify(data)}`);
      // TLS verified against the cluster's CA, which the same answer carries.
      const ca = data.ca_certificate;
      check(ca.startsWith("-----BEGIN CERTIFICATE-----"), `credentials have no CA: ${ca}`);
      check(uri.includes("sslmode=verify-full"), `the uri does not verify the server: ${uri}`);
      const caFile = path.join(os.tmpdir(), `herd-sdk-smoke-${id}.crt`);
      fs.writeFileSync(caFile, ca);
      const value = `hello from ${name}`;
      const db = new pg.Client({
        connectionString: `${uri}&sslrootcert=${encodeURIComponent(caFile)}`,
        connectionTimeoutMillis: 10_000,
      });
      await db.connect();
      try {
        await db.query("CREATE TABLE sdk_smoke (id int PRIMARY KEY, v text NOT NULL)");
        await db.query("INSERT INTO sdk_smoke VALUES (1, $1)", [value]);
        const res = await db.query<{ v: string }>("SELECT v FROM sdk_smoke WHERE id = 1");
        check(res.rows.length === 1 && res.rows[0].v === value, `read back ${JSON.stringify(res.rows)}, want ${value}`);
      } finally {
        await db.end();
      }
      step(`sql: created table, inserted and read back '${value}'`);
    }

    // e. a typed Problem for an invalid request
    {
      const { data, error, response } = await herd.POST("/v1/clusters", {
        body: { name: "Bad_Name", datastore: "postgresql", version: "15", flavor: "local.small", nodes: 99 },
      });
      check(response.status === 422, `invalid create: want 422, got ${response.status} ${JSON.stringify(data ?? error)}`);
      check(error, "invalid create: no problem body");
      const p: Problem = error;
      check(p.status === 422, `problem status ${p.status}`);
      check(p.code === ErrorCode.validation_failed, `problem code ${p.code}`);
      const fields = (p.errors ?? []).map((e) => e.field).sort();
      check(fields.includes("nodes") && fields.includes("name"), `problem errors name ${fields}, want nodes and name`);
      step(`invalid create: 422 ${p.code} fields=${fields.join(",")}`);
    }

    // f. delete, wait for the task, then 404
    {
      const del = await herd.DELETE("/v1/clusters/{id}", { params: { path: { id } } });
      check(del.response.status === 202 && del.data, `delete: ${del.response.status} ${JSON.stringify(del.error)}`);
      const taskId = del.data.task_id;
      deleted = true;
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const { data, error, response } = await herd.GET("/v1/tasks/{id}", { params: { path: { id: taskId } } });
        check(data, `get task: ${response.status} ${JSON.stringify(error)}`);
        const t: TaskDto = data;
        if (t.status === TaskStatus.succeeded) break;
        check(t.status !== TaskStatus.failed && t.status !== TaskStatus.cancelled, `delete task ${t.status}: ${JSON.stringify(t)}`);
        check(performance.now() < deadline, `delete task not done after ${timeoutMs / 1000}s (${t.status})`);
        await sleep(POLL_MS);
      }
      const gone = await herd.GET("/v1/clusters/{id}", { params: { path: { id } } });
      check(gone.response.status === 404, `get deleted cluster: want 404, got ${gone.response.status}`);
      check(gone.error?.code === ErrorCode.not_found, `404 body: ${JSON.stringify(gone.error)}`);
      step(`deleted: task ${taskId} succeeded, cluster now 404 ${gone.error.code}`);
    }
  } finally {
    if (clusterId !== undefined && !deleted) {
      // Best effort: do not leave servers behind when a check failed.
      try {
        await herd.DELETE("/v1/clusters/{id}", { params: { path: { id: clusterId } } });
        console.error(`cleanup: asked to delete cluster ${clusterId}`);
      } catch (e) {
        console.error(`cleanup: could not delete cluster ${clusterId}: ${e}`);
      }
    }
  }
  step("typescript smoke: OK");
}

main().catch((e: unknown) => {
  console.error(`FAIL: ${e instanceof CheckFailed ? e.message : e instanceof Error ? (e.stack ?? e.message) : e}`);
  process.exit(1);
});
