//! One upload stream: its header read and checked, the station's receive slot and byte reservation
//! taken, the ciphertext received against the declared size and digest, and the bundle handed to
//! the group committer; the stream is acknowledged only once the bundle is durable.

use super::*;

/// Bytes of one stream counted against `max_in_flight_bytes`, released when dropped.
struct Reservation<'a> {
    counter: &'a AtomicU64,
    bytes: u64,
}

impl<'a> Reservation<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        Self { counter, bytes: 0 }
    }

    fn try_reserve(&mut self, bytes: u64, max: u64) -> bool {
        let mut current = self.counter.load(Ordering::Relaxed);
        loop {
            if current + bytes > max {
                return false;
            }
            match self.counter.compare_exchange_weak(
                current,
                current + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.bytes += bytes;
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Shared {
    pub(super) async fn handle_stream(
        &self,
        station: &Station,
        window: &Arc<ConnectionWindow>,
        version: u8,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(
            STREAM_TIMEOUT,
            self.receive(station, window, version, &mut recv),
        )
        .await;
        let mut ack = match answer {
            Ok(Some(ack)) => ack,
            Ok(None) => return, // the station reset the stream: nobody to answer
            Err(_) => {
                let _ = recv.stop(1u32.into());
                Ack::busy(
                    None,
                    "request timed out".into(),
                    1_000,
                    crate::base::time::now_ms(),
                )
            }
        };
        if matches!(ack.code, AckCode::Stored | AckCode::Duplicate) {
            ack.recipient = self.recipient.lock().expect("recipient lock").clone();
        }
        match ack.code {
            AckCode::Rejected => {
                warn!(bundle = ?ack.bundle_id, reason = ?ack.reason, "request rejected")
            }
            AckCode::Busy => debug!(bundle = ?ack.bundle_id, reason = ?ack.reason, "busy"),
            code => debug!(bundle = ?ack.bundle_id, ?code, "acknowledged"),
        }
        let sent = send.write_all(&encode_ack(&ack)).await;
        // Uploads by outcome. A heartbeat's acknowledgement carries no bundle id and is not an
        // upload; a request refused before its bundle id was read is counted by its refusal.
        if ack.bundle_id.is_some() || ack.code != AckCode::Stored {
            let m = crate::base::metrics::metrics();
            // In the order of `UPLOAD_OUTCOMES`.
            let outcome = match ack.code {
                AckCode::Stored => 0,
                AckCode::Duplicate => 1,
                AckCode::Rejected => 2,
                AckCode::Busy => 3,
            };
            m.upload_outcomes[outcome].inc();
            m.ack_latency.observe(started.elapsed().as_secs_f64());
        }
        if let Err(e) = sent {
            debug!(error = %e, "could not send acknowledgement");
            return;
        }
        let _ = send.finish();
        // Let the acknowledgement reach the peer before the stream is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(10), send.stopped()).await;
    }

    /// Reads one request and decides its acknowledgement; `None` if the stream was reset.
    async fn receive(
        &self,
        station: &Station,
        window: &Arc<ConnectionWindow>,
        version: u8,
        recv: &mut quinn::RecvStream,
    ) -> Option<Ack> {
        let max_bundle = self.ctx.config.ingest.max_bundle_bytes;
        let mut reader = RequestReader::new(version, max_bundle);
        let mut reservation = Reservation::new(&self.in_flight_bytes);
        // Held while an upload's body is being received (see `admission`).
        let mut slot = None;
        let refuse = |recv: &mut quinn::RecvStream, id, e: ProtocolError| {
            // Do not read the rest of a request we will never accept.
            let _ = recv.stop(1u32.into());
            Some(Ack::for_protocol_error(id, &e, crate::base::time::now_ms()))
        };
        loop {
            match recv.read_chunk(CHUNK, true).await {
                Ok(Some(chunk)) => match reader.feed_bytes(chunk.bytes) {
                    Ok(false) => {}
                    Ok(true) => {
                        let head = reader.head().expect("header ready").clone();
                        if let Some(id) = head.bundle_id() {
                            tracing::Span::current().record("bundle", tracing::field::display(id));
                        }
                        if let Some(ack) = self.admit(station, &head, &mut reservation).await {
                            let _ = recv.stop(0u32.into());
                            return Some(ack);
                        }
                        if matches!(head, RequestHead::Upload(_)) {
                            // Admitted: its size is counted in `reservation`.
                            slot = Some(window.admit(&self.receive_slots).await);
                        }
                    }
                    Err(e) => {
                        let id = reader.head().and_then(|h| h.bundle_id());
                        return refuse(recv, id, e);
                    }
                },
                Ok(None) => break,
                Err(quinn::ReadError::Reset(_)) | Err(quinn::ReadError::ConnectionLost(_)) => {
                    return None
                }
                Err(e) => {
                    return Some(Ack::busy(
                        None,
                        format!("reading: {e}"),
                        1_000,
                        crate::base::time::now_ms(),
                    ))
                }
            }
        }
        drop(slot);
        let id = reader.head().and_then(|h| h.bundle_id());
        // The body was hashed chunk by chunk as it arrived; this only compares.
        let request = match reader.finish() {
            Ok(done) => done,
            Err(e) => return Some(Ack::for_protocol_error(id, &e, crate::base::time::now_ms())),
        };
        match request.head {
            RequestHead::Heartbeat(hb) => Some(self.record_heartbeat(station, hb).await),
            RequestHead::Upload(header) => {
                let id = header.bundle_id;
                let bytes = request.body.len() as u64;
                let now = crate::base::time::now_ms;
                let committed = self
                    .committer
                    .commit(station.id, header, request.body)
                    .await;
                // The body is on disk (or dropped): its bytes no longer count as in flight.
                drop(reservation);
                Some(match committed {
                    Ok(Outcome::Stored) => {
                        self.stored.notify_one();
                        crate::base::metrics::metrics().upload_bytes.inc_by(bytes);
                        Ack::stored(Some(id), now())
                    }
                    Ok(Outcome::Duplicate) => Ack::duplicate(id, now()),
                    Ok(Outcome::Conflict) => Ack::rejected(
                        Some(id),
                        "bundle id already stored with other content".into(),
                        now(),
                    ),
                    Err(e) => {
                        warn!(error = %e, "group commit failed");
                        Ack::busy(
                            Some(id),
                            "server could not store the bundle now".into(),
                            5_000,
                            now(),
                        )
                    }
                })
            }
        }
    }

    /// Decides, from the header alone, whether to answer before the body arrives.
    async fn admit(
        &self,
        station: &Station,
        head: &RequestHead,
        reservation: &mut Reservation<'_>,
    ) -> Option<Ack> {
        let now = crate::base::time::now_ms();
        if head.station() != station.name {
            let e = ProtocolError::WrongStation {
                claimed: head.station().to_string(),
                actual: station.name.clone(),
            };
            return Some(Ack::for_protocol_error(head.bundle_id(), &e, now));
        }
        let RequestHead::Upload(h) = head else {
            return None;
        };
        let id = Some(h.bundle_id);
        let (spool, bundle_id, sha) = (self.spool.clone(), h.bundle_id, h.sha256.clone());
        let known = registry_read(self.spool.reader().backend(), move || {
            spool.known(&bundle_id, &sha)
        })
        .await
        .ok_or_else(|| "registry lookup failed".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        match known {
            Ok(Known::Same) => return Some(Ack::duplicate(h.bundle_id, now)),
            Ok(Known::Conflict { .. }) => {
                return Some(Ack::rejected(
                    id,
                    "bundle id already stored with other content".into(),
                    now,
                ))
            }
            Ok(Known::New) => {}
            Err(e) => {
                warn!(error = %e, "bundle registry unreadable");
                return Some(Ack::busy(
                    id,
                    "server could not check the bundle now".into(),
                    5_000,
                    now,
                ));
            }
        }
        if let Err(wait_ms) = self.rates.lock().expect("lock").try_take(station.id, now) {
            return Some(Ack::busy(
                id,
                "station over its upload rate".into(),
                wait_ms,
                now,
            ));
        }
        let cfg = &self.ctx.config.ingest;
        let in_flight = self.in_flight_bytes.load(Ordering::Relaxed);
        if self.spool.backlog_bytes() + in_flight + h.size > cfg.spool_high_water_bytes {
            return Some(Ack::busy(
                id,
                "spool above its high-water mark".into(),
                30_000,
                now,
            ));
        }
        match self.spool.available_disk_bytes() {
            // Object storage: its operators manage its capacity; a full store fails the PUT.
            Ok(None) => {}
            Ok(Some(free)) if free >= cfg.min_free_disk_bytes + in_flight + h.size => {}
            Ok(Some(_)) => {
                return Some(Ack::busy(
                    id,
                    "disk space reserve reached".into(),
                    60_000,
                    now,
                ))
            }
            Err(e) => {
                warn!(error = %e, "cannot read free disk space");
                return Some(Ack::busy(
                    id,
                    "server could not check its disk".into(),
                    5_000,
                    now,
                ));
            }
        }
        if !reservation.try_reserve(h.size, cfg.max_in_flight_bytes) {
            return Some(Ack::busy(
                id,
                "too many bytes being received".into(),
                1_000,
                now,
            ));
        }
        None
    }
}
