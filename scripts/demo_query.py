"""Show what `make demo` wrote: a DuckDB query over the lake, the way Athena reads it (hive partitions)."""

import sys

import duckdb

lake = sys.argv[1] if len(sys.argv) > 1 else "lake"
con = duckdb.connect()
queue = f"read_parquet('{lake}/connect_queue_interval/*/*.parquet', hive_partitioning = true)"
agent = f"read_parquet('{lake}/connect_agent_interval/*/*.parquet', hive_partitioning = true)"

print("\nContacts handled and average handle time per queue per reporting day (America/New_York):")
print(
    con.sql(
        f"""
        select dt, queue,
               sum(contacts_handled) as contacts_handled,
               round(sum(average_handle_time_seconds * contacts_handled)
                     / nullif(sum(contacts_handled), 0), 1) as avg_handle_time_seconds,
               count(*) as intervals
        from {queue}
        group by dt, queue
        order by dt, queue
        """
    )
)
print("Intervals per day (2024-03-10 is a DST day: 46 half hours):")
print(con.sql(f"select dt, count(distinct interval_start) as intervals from {queue} group by dt order by dt"))
print("Agents per day (lunch_time_seconds came from a header cxlake did not know):")
print(
    con.sql(
        f"""
        select dt, agent, any_value(agent_name) as agent_name, sum(contacts_handled) as contacts_handled,
               round(sum(agent_interaction_time_seconds) / 3600, 2) as interaction_hours,
               round(sum(lunch_time_seconds) / 60) as lunch_minutes
        from {agent} group by dt, agent order by dt, agent limit 10
        """
    )
)

accounts = f"read_parquet('{lake}/sf_account_latest/*.parquet')"
interactions = f"read_parquet('{lake}/sf_cx_interaction__c_latest/*.parquet')"
print("Salesforce accounts exported from the emulator (sf_account_latest), by industry:")
print(
    con.sql(
        f"""
        select industry, count(*) as accounts, round(sum(annual_revenue) / 1e6, 1) as revenue_musd,
               any_value(owner__name) as an_owner, max(system_modstamp) as last_modified
        from {accounts} group by industry order by accounts desc, industry limit 8
        """
    )
)
print("Custom object CX_Interaction__c (sf_cx_interaction__c_latest): columns and types from describe:")
print(con.sql(f"select column_name, column_type from (describe select * from {interactions}) limit 40"))

runs = f"read_parquet('{lake}/cxlake_runs/*/*.parquet', hive_partitioning = true)"
reconciliation = f"read_parquet('{lake}/cxlake_reconciliation/*/*.parquet', hive_partitioning = true)"
print("The demo's runs (cxlake_runs) and their reconciliation per partition or object (cxlake_reconciliation):")
print(
    con.sql(
        f"""
        with units as (
            select run_id, count(*) filter (where status = 'ok') as ok,
                   count(*) filter (where status = 'mismatch') as mismatch,
                   count(*) filter (where status = 'lost') as lost
            from {reconciliation} group by run_id
        )
        select job, count(*) as runs, sum(rows_in)::bigint as rows_in, sum(rows_out)::bigint as rows_out,
               sum(rejects)::bigint as rejects, arg_max(exit_code, started_at) as last_exit,
               sum(ok)::bigint as ok, sum(mismatch)::bigint as mismatch, sum(lost)::bigint as lost
        from {runs} left join units using (run_id)
        group by job order by min(started_at)
        """
    )
)
