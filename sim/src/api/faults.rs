//! Faults a test asks the API server to make, to show a client survives them: the
//! answer to a create lost after the object was stored (a timeout, a dropped
//! connection), as happens to a controller whose connection breaks mid-request.

use std::collections::HashMap;
use std::sync::Mutex;

/// The faults armed.
#[derive(Debug, Default)]
pub struct Faults {
    /// Per resource plural (`deployments`): how many more creates lose their answer.
    lost_creates: Mutex<HashMap<String, u32>>,
}

impl Faults {
    /// The next `n` creates of `resource` (a plural, `deployments`) are stored, and
    /// their answer is lost: the client gets a 504 instead.
    pub fn lose_create_responses(&self, resource: &str, n: u32) {
        self.lock().insert(resource.to_owned(), n);
    }

    /// Whether the answer to this create of `resource` is lost (counting it).
    pub fn create_answer_lost(&self, resource: &str) -> bool {
        let mut armed = self.lock();
        match armed.get_mut(resource) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// How many creates of `resource` are still to lose their answer.
    pub fn armed(&self, resource: &str) -> u32 {
        self.lock().get(resource).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.lost_creates.lock().unwrap_or_else(|p| p.into_inner())
    }
}
