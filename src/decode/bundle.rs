//! One bundle, from ciphertext to rows: decrypt with any of the server's age identities, verify
//! the station's Ed25519 signature, decode the Arrow IPC envelope, check it against the registry
//! (pairing, assignment, time range), validate each reading, and pseudonymise. Nothing is written
//! here: the rows go back to the batch.

use super::*;

impl Decoder {
    /// Outer error: the server failed (retry later). Inner error: the bundle is bad (quarantine).
    pub(super) fn process(
        &self,
        bundle_id: &BundleId,
        keys: &Keys,
        identities: &[age::x25519::Identity],
    ) -> Result<Result<Processed, Reject>> {
        let blobs = &self.ctx.blobs;
        let received_at_ms = keys.received_at_ms;
        // Waiting in the spool; or moved to evidence by a batch whose commit did not happen. A
        // segment keeps a bundle's bytes after they were copied to quarantine, so a quarantine
        // whose row update did not happen is looked for first.
        let quarantined_already =
            keys.spooled.segment().is_some() && blobs.exists(&Key::quarantined(bundle_id))?;
        let mut ciphertext = match quarantined_already {
            true => None,
            false => keys.spooled.read(blobs)?,
        };
        if ciphertext.is_none() && !quarantined_already {
            ciphertext = blobs.get(&keys.evidence)?;
        }
        let Some(ciphertext) = ciphertext else {
            // A quarantine interrupted between moving the file and updating its row (see
            // [`Decoder::quarantine`]): finish it with the reason recorded then, not a new one.
            if blobs.exists(&Key::quarantined(bundle_id))? {
                let reason = match blobs.get(&Key::quarantine_reason(bundle_id)) {
                    Ok(Some(r)) => String::from_utf8_lossy(&r).into_owned(),
                    Ok(None) => "quarantined before a restart; reason file missing".into(),
                    Err(e) => {
                        format!("quarantined before a restart; reason file unreadable: {e}")
                    }
                };
                return Ok(Err(Reject::new(reason)));
            }
            return Ok(Err(Reject::new(format!(
                "spool file unreadable: {:?} is in neither the spool nor the evidence store",
                keys.spooled
            ))));
        };
        let plaintext = match age::Decryptor::new_buffered(&ciphertext[..])
            .and_then(|d| d.decrypt(identities.iter().map(|i| i as &dyn age::Identity)))
        {
            Ok(mut reader) => {
                // The plaintext is a little shorter than the ciphertext: one allocation, no regrowth.
                let mut out = Vec::with_capacity(ciphertext.len());
                if let Err(e) = std::io::Read::read_to_end(&mut reader, &mut out) {
                    return Ok(Err(Reject::new(format!("decryption failed: {e}"))));
                }
                out
            }
            Err(e) => return Ok(Err(Reject::new(format!("decryption failed: {e}")))),
        };
        let signed = match decode_signed(&plaintext) {
            Ok(s) => s,
            Err(e) => return Ok(Err(Reject::new(format!("signed envelope: {e}")))),
        };
        let uploader: Option<(i64, String, Option<String>)> = self
            .ctx
            .db
            .lock()
            .query_row(
                "SELECT s.id, s.name, s.signing_public_key FROM bundles b JOIN stations s ON s.id = b.station_id
                  WHERE b.bundle_id = ?1",
                [bundle_id.to_hex()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((station_id, station, Some(public_key))) = uploader else {
            return Ok(Err(Reject::new(
                "uploading station has no registered signing key".into(),
            )));
        };
        if signed.station != station {
            return Ok(Err(Reject::new(format!(
                "signed as station {:?} but uploaded by {station:?}",
                signed.station
            ))));
        }
        let verified = hex::decode(&public_key).ok().is_some_and(|key| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
                .verify(&signed.digest(), &signed.signature)
                .is_ok()
        });
        if !verified {
            return Ok(Err(Reject::new(format!(
                "signature does not verify with station {station:?}'s registered key"
            ))));
        }
        // Reserve what the bundle declares it decodes to before decoding it (a bomb is refused
        // here from its headers), so parallel bundles never hold more than the budget at once.
        let declared = match nachtwacht_wire::bundle::declared_decoded_len(signed.bundle) {
            Ok(n) => n,
            Err(e) => return Ok(Err(Reject::new(format!("invalid bundle: {e}")))),
        };
        let _memory = self.memory.reserve(declared);
        let bundle = match decode_bundle(signed.bundle) {
            Ok(b) => b,
            Err(e) => return Ok(Err(Reject::new(format!("invalid bundle: {e}")))),
        };
        if bundle.manifest.bundle_id != *bundle_id {
            return Ok(Err(Reject::new(format!(
                "manifest bundle id {} differs from the uploaded id",
                bundle.manifest.bundle_id
            ))));
        }
        if let Err(reason) = validate::check_timestamp_range(&bundle.batches)
            .and_then(|()| validate::check_rows_plausible(&bundle.batches))
        {
            return Ok(Err(Reject::new(reason)));
        }
        let first_ts = bundle
            .batches
            .iter()
            .filter_map(|b| {
                b.batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::TimestampMillisecondArray>()
                    .and_then(arrow::compute::min)
            })
            .min();
        let serial = &bundle.manifest.device_serial;
        // Checked before the pairing: a supervision's end also ends its devices' pairings.
        if let Some(first_ts) = first_ts {
            if let Some((person, ended_ms)) = self.supervision_ended(serial, first_ts)? {
                return Ok(Err(Reject {
                    reason: format!(
                        "supervision ended: device {serial} was returned when its wearer's supervision ended at {ended_ms} ms, before these readings ({first_ts} ms)"
                    ),
                    person: Some(person),
                }));
            }
        }
        let paired: Option<i64> = self
            .ctx
            .db
            .lock()
            .query_row(
                "SELECT id FROM device_pairings
                  WHERE device_serial = ?1 AND station_id = ?2 AND valid_from_ms <= ?3
                    AND (valid_to_ms IS NULL OR valid_to_ms > ?3)",
                crate::params![serial, station_id, received_at_ms],
                |r| r.get(0),
            )
            .optional()?;
        if paired.is_none() {
            return Ok(Err(Reject::new(format!(
                "device {serial} is not paired with station {station:?}"
            ))));
        }
        let Some(first_ts) = first_ts else {
            return Ok(Ok(Processed {
                stored: 0,
                discarded: 0,
                signed_by: public_key,
                rows: vec![],
                flags: FlagCounts::default(),
                person: None,
            }));
        };
        let assignment: Option<(i64, i64, Option<i64>, String)> = self
            .ctx
            .db
            .lock()
            .query_row(
                "SELECT p.id, a.valid_from_ms, a.valid_to_ms, pr.signals FROM assignments a
               JOIN persons p ON p.id = a.person_id
               JOIN programmes pr ON pr.name = p.programme
              WHERE a.device_serial = ?1 AND a.valid_from_ms <= ?2
                AND (a.valid_to_ms IS NULL OR a.valid_to_ms > ?2)
              ORDER BY a.valid_from_ms DESC LIMIT 1",
                crate::params![serial, first_ts.max(0)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((person_id, assigned_from_ms, assigned_to_ms, allowed)) = assignment else {
            return Ok(Err(Reject::new(format!(
                "device {serial} is not assigned to a person at {first_ts} ms"
            ))));
        };
        let window = validate::Window {
            not_before_ms: assigned_from_ms,
            not_after_ms: future_limit_ms(received_at_ms, self.last_clock_offset_ms(station_id)?),
            assignment_ends_ms: assigned_to_ms,
        };
        let allowed: BTreeSet<&str> = allowed.split(',').collect();
        let pid = self.pseudonyms.operational(person_id);
        let (mut stored, mut discarded) = (0, 0);
        let mut rows = Vec::new();
        let mut flags = FlagCounts::default();
        // Skin temperature judges EDA (see `validate::validate`), but only when
        // the programme may collect it: a discarded signal is not used for anything.
        let skin_temperature = bundle
            .batches
            .iter()
            .find(|sb| sb.signal == Signal::Temp && allowed.contains(sb.signal.name()));
        for sb in &bundle.batches {
            if allowed.contains(sb.signal.name()) {
                let quality = validate::validate(
                    sb.signal,
                    &sb.batch,
                    sb.rate_hz,
                    window,
                    skin_temperature.map(|t| &t.batch),
                );
                flags.add(&quality);
                rows.push((
                    sb.signal,
                    dataset::stored_rows(sb.signal, bundle_id, &pid, &sb.batch, &quality)?,
                ));
                stored += sb.batch.num_rows();
            } else {
                // Purpose binding: collected by the device, not allowed by the programme.
                discarded += sb.batch.num_rows();
            }
        }
        Ok(Ok(Processed {
            stored,
            discarded,
            signed_by: public_key,
            rows,
            flags,
            person: Some(person_id),
        }))
    }

    /// The person whose supervision ended before `first_ts` with this device returned, and when
    /// it ended: the device's latest assignment before `first_ts` ended by then and its wearer's
    /// supervision is closed.
    fn supervision_ended(&self, serial: &str, first_ts: i64) -> Result<Option<(i64, i64)>> {
        Ok(self
            .ctx
            .db
            .lock()
            .query_row(
                "SELECT a.person_id, p.closed_at_ms FROM assignments a
                   JOIN persons p ON p.id = a.person_id
                  WHERE a.device_serial = ?1 AND a.valid_from_ms <= ?2
                  ORDER BY a.valid_from_ms DESC LIMIT 1",
                crate::params![serial, first_ts],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
            .optional()?
            .and_then(|(person, closed)| closed.filter(|c| *c <= first_ts).map(|c| (person, c))))
    }

    /// The clock offset the station reported in its latest heartbeat (0 when it never sent one).
    pub(super) fn last_clock_offset_ms(&self, station_id: i64) -> Result<i64> {
        Ok(self
            .ctx
            .db
            .lock()
            .query_row(
                "SELECT clock_offset_ms FROM station_heartbeats
                  WHERE station_id = ?1 AND clock_offset_ms IS NOT NULL
                  ORDER BY received_at_ms DESC LIMIT 1",
                [station_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0))
    }
}
