//! Example graphs for databuild, shared by the runnable examples (the
//! `[[example]]` targets) and their tests.

pub mod reviews {
    //! Reviews: raw daily reviews, daily summaries, weekly reports.

    use databuild_core::{FnJob, Graph, JobConfig, PartitionRef};

    /// Errors of the example's config functions.
    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// `2024-01-07` minus `back` days, for dates in one month (enough here).
    fn day_before(date: &str, back: u32) -> Result<String, BoxError> {
        let day: u32 = date[8..10].parse()?;
        let day = day
            .checked_sub(back)
            .filter(|d| *d >= 1)
            .ok_or("date leaves the month")?;
        Ok(format!("{}{day:02}", &date[..8]))
    }

    /// The `date=` value of a ref such as `reviews/raw/date=2024-01-03`.
    fn date_of(partition: &PartitionRef) -> Result<&str, BoxError> {
        let s = partition.as_str();
        let at = s.rfind('=').ok_or("no date in ref")?;
        Ok(&s[at + 1..])
    }

    /// The three jobs: ingest, daily summary, weekly report.
    pub fn graph() -> Result<Graph, Box<dyn std::error::Error>> {
        // Raw reviews land once a day; nothing upstream.
        let raw = FnJob::builder("//reviews:ingest")
            .pattern(r"reviews/raw/date=(?P<date>\d{4}-\d{2}-\d{2})")
            .config(|outs: &[PartitionRef]| {
                Ok(outs.iter().map(|o| JobConfig::new([o.clone()])).collect())
            })
            .build()?;
        // A daily summary needs that day's raw reviews.
        let daily = FnJob::builder("//reviews:daily_summary")
            .pattern(r"reviews/daily/date=(?P<date>\d{4}-\d{2}-\d{2})")
            .config(|outs: &[PartitionRef]| {
                outs.iter()
                    .map(|o| {
                        let raw = PartitionRef::new(format!("reviews/raw/date={}", date_of(o)?))?;
                        Ok(JobConfig::new([o.clone()]).materialize(raw))
                    })
                    .collect()
            })
            .build()?;
        // A weekly report needs the week's seven daily summaries.
        let weekly = FnJob::builder("//reports:weekly")
            .pattern(r"reports/weekly/week_end=(?P<date>\d{4}-\d{2}-\d{2})")
            .config(|outs: &[PartitionRef]| {
                outs.iter()
                    .map(|o| {
                        let mut config = JobConfig::new([o.clone()]);
                        for back in 0..7 {
                            let day = day_before(date_of(o)?, back)?;
                            config = config.materialize(PartitionRef::new(format!(
                                "reviews/daily/date={day}"
                            ))?);
                        }
                        Ok(config)
                    })
                    .collect()
            })
            .build()?;
        Ok(Graph::builder().job(raw).job(daily).job(weekly).build()?)
    }

    #[cfg(test)]
    mod tests {
        use databuild_core::{PartitionRef, Planner};

        #[tokio::test]
        async fn weekly_report_plans_seven_days() {
            let plan = Planner::new(super::graph().unwrap())
                .analyze(&[PartitionRef::new("reports/weekly/week_end=2024-01-07").unwrap()])
                .await
                .unwrap();
            assert_eq!(plan.len(), 15);
            assert_eq!(plan.edge_count(), 14);
            let mermaid = plan.to_mermaid();
            assert!(mermaid.contains("reviews/raw/date=2024-01-01"));
            assert!(!mermaid.contains("2023-12-31"));
        }

        #[test]
        fn dates_outside_the_month_are_errors() {
            assert!(super::day_before("2024-01-03", 3).is_err());
            assert_eq!(super::day_before("2024-01-03", 2).unwrap(), "2024-01-01");
        }
    }
}

pub mod pipeline {
    //! The main example's graph: five jobs in the DataBuild job protocol,
    //! all served by one program (`<program> job <name> config|exec`). The
    //! `pipeline` example runs them as local processes, `docker_pipeline`
    //! as containers of an image holding the same program.

    use std::path::Path;

    use databuild_core::{Graph, ProcessJob};

    /// Job names and the partitions each produces.
    pub const JOBS: [(&str, &str); 5] = [
        ("raw", r"raw/date=\d{4}-\d{2}-\d{2}"),
        ("clean", r"clean/date=\d{4}-\d{2}-\d{2}"),
        ("daily", r"daily/date=\d{4}-\d{2}-\d{2}"),
        ("weekly", r"weekly/week_end=\d{4}-\d{2}-\d{2}"),
        ("rates", r"rates/year=\d{4}"),
    ];

    /// The graph of jobs run as `program job <name> ...`, writing under
    /// `data`, in `image` when given (on an executor that runs
    /// containers; `config` still runs `program` on this host).
    pub fn graph(
        program: &Path,
        data: &Path,
        image: Option<&str>,
    ) -> Result<Graph, Box<dyn std::error::Error + Send + Sync>> {
        let program = program.to_string_lossy().into_owned();
        let mut graph = Graph::builder();
        for (name, pattern) in JOBS {
            let mut job = ProcessJob::builder(
                format!("//pipeline:{name}"),
                vec![program.clone(), "job".into(), name.into()],
            )
            .pattern(pattern)
            .env("PIPELINE_DATA", data.to_string_lossy());
            if let Some(image) = image {
                job = job.image(image);
            }
            graph = graph.job(job.build()?);
        }
        Ok(graph.build()?)
    }
}
