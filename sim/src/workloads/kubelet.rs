//! The kubelet's part: pods become ready after their delay; failing pods restart.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde_json::Value;
use tokio::time::Instant;

use super::{PodBehaviour, pods};
use crate::object::Meta;
use crate::store::{Event, EventType, ResKey, Store};

type PodKey = (String, String);

/// Timers for pods.
pub struct Kubelet {
    behaviour: PodBehaviour,
    due: BinaryHeap<Reverse<(Instant, PodKey)>>,
    ips: HashMap<PodKey, String>,
    next_ip: u32,
}

impl Kubelet {
    /// A kubelet with these pod behaviours.
    pub fn new(behaviour: PodBehaviour) -> Self {
        Kubelet {
            behaviour,
            due: BinaryHeap::new(),
            ips: HashMap::new(),
            next_ip: 0,
        }
    }

    /// Schedules a new pod's start; forgets a deleted one.
    pub fn observe(&mut self, event: &Event) {
        let meta = Meta::of(&event.object);
        let key = (meta.namespace().to_owned(), meta.name().to_owned());
        match event.kind {
            EventType::Added if event.object.pointer("/status/podIP").is_none() => {
                let delay = pods::ready_delay(&event.object, self.behaviour.ready_delay);
                self.due.push(Reverse((Instant::now() + delay, key)));
            }
            EventType::Deleted => {
                self.ips.remove(&key);
            }
            _ => {}
        }
    }

    /// When the next timer is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs every timer that is due.
    pub fn fire(&mut self, store: &Store) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key))) = self.due.pop() else {
                break;
            };
            self.start(store, &key);
        }
    }

    fn start(&mut self, store: &Store, key: &PodKey) {
        let res = ResKey::new("", "pods");
        let Some(pod) = store.get(&res, &key.0, &key.1) else {
            return;
        };
        if pods::is_terminating(&pod) {
            return;
        }
        let ip = self.ip(key);
        let restarts = pod
            .pointer("/status/containerStatuses/0/restartCount")
            .and_then(Value::as_u64)
            .map_or(0, |r| r + u64::from(pods::is_failing(&pod)));
        let mut updated = (*pod).clone();
        updated["status"] = pods::running_status(&pod, &ip, restarts);
        if store.update(&res, updated).is_ok() && pods::is_failing(&pod) {
            self.due.push(Reverse((
                Instant::now() + self.behaviour.restart_every,
                key.clone(),
            )));
        }
    }

    fn ip(&mut self, key: &PodKey) -> String {
        if let Some(ip) = self.ips.get(key) {
            return ip.clone();
        }
        self.next_ip += 1;
        let n = self.next_ip;
        let ip = format!("10.244.{}.{}", (n >> 8) & 0xff, n & 0xff);
        self.ips.insert(key.clone(), ip.clone());
        ip
    }
}
