use super::BuildEvent;

/// Which events a read or subscription returns. The default matches all.
///
/// Conditions combine with AND; an unset condition matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventFilter {
    /// Only events of this build request.
    pub build_request_id: Option<String>,
    /// Only events of this job run.
    pub job_run_id: Option<String>,
    /// Only events whose kind ([`Event::name`](super::Event::name)) is listed.
    pub kinds: Option<Vec<String>>,
}

impl EventFilter {
    /// A filter that matches every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only the events of one build request.
    pub fn build_request(id: impl Into<String>) -> Self {
        Self {
            build_request_id: Some(id.into()),
            ..Self::default()
        }
    }

    /// Only the events of one job run.
    pub fn job_run(id: impl Into<String>) -> Self {
        Self {
            job_run_id: Some(id.into()),
            ..Self::default()
        }
    }

    /// Also require one of these kinds.
    pub fn with_kinds<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kinds = Some(kinds.into_iter().map(Into::into).collect());
        self
    }

    /// True when `event` passes the filter.
    pub fn matches(&self, event: &BuildEvent) -> bool {
        if let Some(id) = &self.build_request_id
            && &event.build_request_id != id
        {
            return false;
        }
        if let Some(id) = &self.job_run_id
            && &event.job_run_id != id
        {
            return false;
        }
        if let Some(kinds) = &self.kinds {
            let name = event.event.as_ref().map_or("", |e| e.name());
            if !kinds.iter().any(|k| k == name) {
                return false;
            }
        }
        true
    }
}
