//! The streaming path: a report parsed in many record-aligned chunks loses and repeats no row.

use std::collections::BTreeMap;
use std::fmt::Write;

use cxlake::connect::job::ConnectJob;
use cxlake::job::{self, JobKind};
use cxlake::window::Window;

fn report(rows_per_interval: usize, intervals: usize) -> String {
    let mut text =
        String::from("\u{feff}Agent,StartInterval,EndInterval,Contacts handled,Agent Name\r\n");
    for i in 0..intervals {
        let start = chrono::DateTime::from_timestamp(
            1_700_000_000 - 1_700_000_000 % 1800 + i as i64 * 1800,
            0,
        )
        .unwrap();
        let end = start + chrono::Duration::minutes(30);
        for q in 0..rows_per_interval {
            let _ = write!(
                text,
                "agent{q},{},{},{},\"line one\nline \"\"two\"\"\"\r\n",
                start.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                end.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                q + i
            );
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_lands_whatever_the_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src");
    std::fs::create_dir(&source).unwrap();
    // Rows with a quoted newline exercise the quote-aware splitter at every chunk size.
    std::fs::write(source.join("Big-2024-01-01T00:00:00Z.csv"), report(7, 300)).unwrap();
    let job_file = dir.path().join("job.toml");
    std::fs::write(
        &job_file,
        format!(
            "[job]\nname = \"chunks\"\nkind = \"connect-intervals\"\n[source]\nurl = \"file://{}/\"\nreport = \"agent\"\ninstance = \"t\"\n[lake]\nurl = \"file://{}/lake\"\n",
            source.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let job = job::load(&job_file, &BTreeMap::new()).unwrap();
    let JobKind::ConnectIntervals(settings) = &job.kind else {
        panic!("a connect job")
    };
    let mut previous: Option<Vec<(String, usize)>> = None;
    for chunk_bytes in [1, 97, 4096, 1 << 20] {
        let connect = ConnectJob::open(&job, settings, cxlake::connect::job::OpenMode::Run)
            .await
            .unwrap()
            .with_chunk_bytes(chunk_bytes);
        let plan = connect
            .plan(Window::from_days(None, None, job.timezone))
            .await
            .unwrap();
        // the run leaves the state alone, so every iteration plans the file again
        let plan = cxlake::connect::job::Plan {
            hold_watermark: true,
            ..plan
        };

        assert_eq!(plan.files.len(), 1, "{plan:?}");
        let report = connect
            .run(&plan, &cxlake::observe::progress::Progress::hidden())
            .await
            .unwrap();
        assert_eq!(
            report.rows_read,
            7 * 300,
            "chunk size {chunk_bytes}: {report:?}"
        );
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        let partitions: Vec<(String, usize)> = report
            .partitions
            .iter()
            .map(|p| (p.dt.clone(), p.rows))
            .collect();
        assert_eq!(partitions.iter().map(|p| p.1).sum::<usize>(), 7 * 300);
        if let Some(previous) = &previous {
            assert_eq!(previous, &partitions);
            assert!(
                report.partitions.iter().all(|p| !p.written),
                "same rows must give the same bytes"
            );
        }
        previous = Some(partitions);
        assert!(
            !dir.path().join("lake/_etl/state/chunks.json").exists(),
            "a plan that holds the watermark writes no state"
        );
    }
}
