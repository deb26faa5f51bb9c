//! The graph the custom executor example builds: four shell jobs over daily
//! partitions, with their data as files under one directory.
//!
//! - `words/D`: a line of text;
//! - `counts/D` (reads `words/D`): how many words;
//! - `stopwords/D`: the words a report leaves out;
//! - `report/D` (reads `counts/D` and `words/D`): the counts with and without
//!   stopwords. It finds out that it needs `stopwords/D` only when it runs:
//!   it prints the protocol's missing-deps line, the orchestrator builds the
//!   stopwords, then runs the report again.
//!
//! The jobs are `testkit::jobs::TestJob`s: `sh -c <script>`, making
//! `<name>/<key>` and reading `<input>/<key>`. Real jobs are usually
//! `ProcessJob`s, programs that also answer the protocol's `config` call
//! (see the `pipeline` example); to an executor both are `Launch::Process`.

use std::path::Path;

use databuild_core::testkit::jobs::TestJob;
use databuild_core::{Graph, GraphError, PartitionRef, PartitionRefError};

/// The days the example asks reports for.
pub(crate) const DAYS: [&str; 3] = ["2024-01-01", "2024-01-02", "2024-01-03"];

/// What the example asks for: a report per day.
pub(crate) fn requested() -> Result<Vec<PartitionRef>, PartitionRefError> {
    DAYS.iter()
        .map(|day| PartitionRef::new(format!("report/{day}")))
        .collect()
}

/// The four jobs, keeping their data under `data`.
pub(crate) fn graph(data: &Path) -> Result<Graph, GraphError> {
    // Each script starts by finding its output (`DATABUILD_OUTPUTS` is a JSON
    // array, here of one ref) and defines `publish`, which writes stdin to
    // the output's file aside, then renames it into place: a partition is
    // never seen half-written.
    let prelude = format!(
        r#"set -eu
data={data}
out=$(printf %s "$DATABUILD_OUTPUTS" | tr -d '[]"')
day=${{out#*/}}
publish() {{
    mkdir -p "$(dirname "$data/$out")"
    cat > "$data/$out.tmp"
    mv "$data/$out.tmp" "$data/$out"
    echo "wrote $out"
}}
"#,
        data = sh_quote(&data.to_string_lossy())
    );
    let job = |name: &str, script: &str| TestJob::sh(name, format!("{prelude}{script}"));

    let words = job(
        "words",
        r#"
case $day in
    *-01) text='the quick brown fox jumps over the lazy dog' ;;
    *-02) text='the dog sleeps all afternoon' ;;
    *) text='a fox and a dog meet over the fence' ;;
esac
echo "$text" | publish
"#,
    );
    let counts = job(
        "counts",
        r#"wc -w < "$data/words/$day" | tr -d ' ' | publish"#,
    )
    .reads("words");
    let stopwords = job(
        "stopwords",
        r#"printf 'a\nall\nand\nover\nthe\n' | publish"#,
    );
    let report = job(
        "report",
        r#"
if [ ! -f "$data/stopwords/$day" ]; then
    echo "stopwords/$day is missing: asking for it"
    need="{\"impacted\":[\"$out\"],\"missing\":[\"stopwords/$day\"]}"
    echo "__DATABUILD_ERROR__::{\"missing_deps\":[$need]}"
    exit 0
fi
kept=$(tr ' ' '\n' < "$data/words/$day" | grep -v -x -F -f "$data/stopwords/$day" | grep -c . || true)
echo "$(cat "$data/counts/$day") words, $kept without stopwords" | publish
"#,
    )
    .reads("counts")
    .reads("words");
    Graph::builder()
        .job(words)
        .job(counts)
        .job(stopwords)
        .job(report)
        .build()
}

/// `s` quoted for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
