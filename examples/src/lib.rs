//! Example graphs for databuild, shared by the runnable examples (the
//! `[[example]]` targets) and their tests.

pub mod image;

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
    //!
    //! Its partitions are typed ([`databuild_core::typed_partition!`]): the
    //! jobs' patterns come from the types, and the jobs build their inputs
    //! from typed values (`Daily { date: end.add_days(-3) }`), never by
    //! formatting strings.

    use std::path::Path;

    use databuild_core::partition::{Date, TypedPartition};
    use databuild_core::{Graph, PartitionPattern, ProcessJob, typed_partition};

    typed_partition! {
        /// One day of generated raw events.
        pub struct Raw = "raw/date={date}" {
            /// The day.
            pub date: Date,
        }
    }
    typed_partition! {
        /// One day of valid events.
        pub struct Clean = "clean/date={date}" {
            /// The day.
            pub date: Date,
        }
    }
    typed_partition! {
        /// One day of event counts per kind.
        pub struct Daily = "daily/date={date}" {
            /// The day.
            pub date: Date,
        }
    }
    typed_partition! {
        /// Seven days of counts, priced, named by the last day.
        pub struct Weekly = "weekly/week_end={week_end}" {
            /// The week's last day.
            pub week_end: Date,
        }
    }
    typed_partition! {
        /// A year's price per event.
        pub struct Rates = "rates/year={year}" {
            /// The year.
            pub year: i64,
        }
    }

    /// Job names and the pattern of the partitions each produces.
    pub fn jobs() -> [(&'static str, &'static PartitionPattern); 5] {
        [
            ("raw", Raw::pattern()),
            ("clean", Clean::pattern()),
            ("daily", Daily::pattern()),
            ("weekly", Weekly::pattern()),
            ("rates", Rates::pattern()),
        ]
    }

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
        for (name, pattern) in jobs() {
            let mut job = ProcessJob::builder(
                format!("//pipeline:{name}"),
                vec![program.clone(), "job".into(), name.into()],
            )
            .pattern(pattern.as_str())
            .env("PIPELINE_DATA", data.to_string_lossy());
            if let Some(image) = image {
                job = job.image(image);
            }
            graph = graph.job(job.build()?);
        }
        Ok(graph.build()?)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use databuild_core::PartitionRef;
        use databuild_core::partition::TypedPartitionError;

        fn round_trip<T: TypedPartition + PartialEq + std::fmt::Debug>(value: T, text: &str) {
            let r = value.to_ref().unwrap();
            assert_eq!(r.as_str(), text);
            assert!(T::pattern().is_match(&r));
            assert_eq!(T::from_ref(&r).unwrap(), value);
        }

        #[test]
        fn every_type_round_trips() {
            let date: Date = "2024-01-07".parse().unwrap();
            round_trip(Raw { date }, "raw/date=2024-01-07");
            round_trip(Clean { date }, "clean/date=2024-01-07");
            round_trip(Daily { date }, "daily/date=2024-01-07");
            round_trip(Weekly { week_end: date }, "weekly/week_end=2024-01-07");
            round_trip(Rates { year: 2024 }, "rates/year=2024");
        }

        #[test]
        fn a_ref_that_does_not_fit_names_the_pattern() {
            let bad = PartitionRef::new("weekly/week=2024-01-07").unwrap();
            let err = Weekly::from_ref(&bad).unwrap_err();
            assert!(matches!(err, TypedPartitionError::NoMatch { .. }));
            assert!(
                err.to_string().contains(Weekly::pattern().as_str()),
                "{err}"
            );
            let bad = PartitionRef::new("daily/date=2024-13-01").unwrap();
            let err = Daily::from_ref(&bad).unwrap_err();
            assert!(
                matches!(err, TypedPartitionError::Field { field: "date", .. }),
                "{err}"
            );
        }
    }
}
