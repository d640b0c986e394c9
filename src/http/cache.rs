//! The result cache: a bounded LRU of reports keyed by the SHA-256 of the image and the
//! options that change the report, so a repeated image is answered without decoding.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::forensics::{DetectOptions, Report};

/// Cache key: image digest and the options the report depends on.
type Key = ([u8; 32], DetectOptions);

/// A thread-safe LRU of reports; a capacity of 0 disables it.
pub struct ResultCache {
    entries: Option<Mutex<LruCache<Key, Arc<Report>>>>,
}

impl ResultCache {
    /// A cache holding at most `capacity` reports.
    pub fn new(capacity: usize) -> ResultCache {
        ResultCache { entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))) }
    }

    /// The cached report of an image, when there is one.
    pub fn get(&self, digest: &[u8; 32], options: DetectOptions) -> Option<Arc<Report>> {
        let mut entries = self.entries.as_ref()?.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&(*digest, options)).cloned()
    }

    /// Forget every report of an image (a deleted analysis must leave nothing behind).
    pub fn remove(&self, digest: &[u8; 32]) {
        if let Some(entries) = &self.entries {
            let mut entries = entries.lock().unwrap_or_else(|e| e.into_inner());
            for from_extension in [false, true] {
                entries.pop(&(*digest, DetectOptions { from_extension }));
            }
        }
    }

    /// Remember a report.
    pub fn put(&self, digest: [u8; 32], options: DetectOptions, report: Arc<Report>) {
        if let Some(entries) = &self.entries {
            entries.lock().unwrap_or_else(|e| e.into_inner()).put((digest, options), report);
        }
    }
}
