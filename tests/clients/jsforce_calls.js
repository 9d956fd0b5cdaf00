// The common calls of jsforce 3 (unmodified, from npm) against a Salesforce org, each step's
// outcome printed as one JSON object on stdout for tests/integration/test_emulator_clients.py.
//
// Usage: node jsforce_calls.js   (EMULATOR_URL, SF_CLIENT_ID, SF_CLIENT_SECRET, SF_USERNAME,
// SF_PASSWORD in the environment). Every step runs even when an earlier one failed, so one
// report names every failing call.
'use strict';

const jsforce = require('jsforce');
const { QueryJobV2 } = require('jsforce/lib/api/bulk2');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

async function main() {
  const report = {};
  const step = async (name, fn) => {
    try {
      report[name] = { ok: true, value: await fn() };
    } catch (err) {
      report[name] = { ok: false, error: `${err.name}: ${err.message}`, errorCode: err.errorCode };
    }
  };
  const conn = new jsforce.Connection({
    oauth2: {
      loginUrl: env('EMULATOR_URL'),
      clientId: env('SF_CLIENT_ID'),
      clientSecret: env('SF_CLIENT_SECRET'),
    },
    version: '62.0',
  });
  conn.bulk2.pollInterval = 200;
  conn.bulk2.pollTimeout = 30000;

  await step('login', async () => {
    const info = await conn.login(env('SF_USERNAME'), env('SF_PASSWORD'));
    return { userId: info.id, organizationId: info.organizationId, url: info.url,
             instanceUrl: conn.instanceUrl };
  });
  if (process.argv[2] === '--bulk-reader-only') {
    // jsforce's own multi-page reader: all pages through one CSV parser. Run alone, because its
    // failure is an unhandled stream error that ends the Node process.
    const records = await (await conn.bulk2.query('SELECT Id, Name FROM CX_Interaction__c ORDER BY Id')).toArray();
    process.stdout.write(JSON.stringify({ count: records.length, ids: records.map((r) => r.Id) }));
    return;
  }
  await step('identity', async () => {
    const id = await conn.identity();
    return { user_id: id.user_id, organization_id: id.organization_id, username: id.username,
             rest: id.urls && id.urls.rest };
  });
  await step('describe', async () => {
    const d = await conn.sobject('Account').describe();
    return { name: d.name, fields: d.fields.map((f) => [f.name, f.type]) };
  });
  await step('query_paging', async () => {
    const result = await conn.query('SELECT Id, Name FROM CX_Interaction__c',
      { autoFetch: true, maxFetch: 100000, headers: { 'Sforce-Query-Options': 'batchSize=200' } });
    return { totalSize: result.totalSize, ids: result.records.map((r) => r.Id) };
  });
  let created;
  await step('create', async () => {
    const r = await conn.sobject('Account').create({ Name: 'jsforce Ltd', NumberOfEmployees: 12 });
    created = r.id;
    return r;
  });
  await step('retrieve', async () => {
    const r = await conn.sobject('Account').retrieve(created);
    return { Id: r.Id, Name: r.Name, NumberOfEmployees: r.NumberOfEmployees, type: r.attributes.type };
  });
  await step('update', async () =>
    conn.sobject('Account').update({ Id: created, Name: 'jsforce Renamed', AnnualRevenue: '1250.5' }));
  await step('retrieve_updated', async () => {
    const r = await conn.sobject('Account').retrieve(created);
    return { Name: r.Name, AnnualRevenue: r.AnnualRevenue };
  });
  await step('delete', async () => conn.sobject('Account').destroy(created));
  await step('retrieve_deleted', async () => conn.sobject('Account').retrieve(created));
  await step('upsert_rest', async () => {
    const first = await conn.sobject('CX_Interaction__c')
      .upsert({ External_Key__c: 'JS-1', Name: 'first', Hold_Count__c: '3' }, 'External_Key__c');
    const second = await conn.sobject('CX_Interaction__c')
      .upsert({ External_Key__c: 'JS-1', Name: 'second' }, 'External_Key__c');
    return { first, second };
  });
  await step('upsert_wrong_type', async () =>
    conn.sobject('CX_Interaction__c')
      .upsert({ External_Key__c: 'JS-2', Hold_Count__c: 'many' }, 'External_Key__c'));
  await step('upsert_collections', async () =>
    conn.sobject('CX_Interaction__c').upsert([
      { External_Key__c: 'JS-1', Name: 'third' },
      { External_Key__c: 'JS-3', Name: 'new via collections' },
    ], 'External_Key__c'));
  const soql = 'SELECT Id, Name FROM CX_Interaction__c ORDER BY Id';
  await step('bulk_query_pages', async () => {
    // The same job read page by page with jsforce's job API: each page parsed on its own.
    const job = new QueryJobV2(conn, {
      bodyParams: { operation: 'query', query: soql },
      pollingOptions: conn.bulk2,
    });
    await job.open();
    await job.poll(200, 30000);
    const pages = [];
    let locator;
    do {
      const path = locator ? `/${job.id}/results?locator=${locator}` : `/${job.id}/results`;
      // jsforce parses a text/csv body into records.
      const rows = await job.createQueryRequest({ method: 'GET', path, headers: { Accept: 'text/csv' } });
      locator = job.locator;
      pages.push({ rows: rows.length, locator, ids: rows.map((r) => r.Id) });
    } while (locator && locator !== 'null');
    await job.delete();
    return pages;
  });
  await step('bulk_ingest_upsert', async () => {
    const input = 'External_Key__c,Name,Hold_Count__c\nJS-BULK-1,bulk one,1\nJS-1,bulk renamed,\nJS-BULK-2,bad,not-a-number\n';
    const r = await conn.bulk2.loadAndWaitForResults({
      object: 'CX_Interaction__c', operation: 'upsert', externalIdFieldName: 'External_Key__c', input,
    });
    return r;
  });
  await step('limits', async () => {
    const l = await conn.limits();
    return { DailyApiRequests: l.DailyApiRequests };
  });
  process.stdout.write(JSON.stringify(report));
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
