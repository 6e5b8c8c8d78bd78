//! What a command prints from the agent's answer: JSON for programs, sentences and tables for
//! people.

use crate::output;
use gpubook_core::Gpu;
use gpubook_proto::{BookingResponse, Response};

pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn print_response(resp: &Response, known: &[Gpu], json: bool, done: &str) {
    if json {
        print_json(resp);
        return;
    }
    match resp {
        Response::Gpus(g) => {
            let label = match g.source.as_str() {
                "simulated" => " — SIMULATED GPUs, not real ones",
                "replay" => " — replayed readings",
                _ => "",
            };
            println!("{}{label}", g.server);
            println!("{}", output::gpus_table(&g.gpus, g.readings.as_ref()));
        }
        Response::Bookings(b) => {
            if b.bookings.is_empty() {
                println!("No bookings on {}.", b.server);
            } else {
                println!("{}", output::bookings_table(&b.bookings, known));
            }
        }
        Response::Booking(BookingResponse {
            booking,
            also_changed,
            ..
        }) => {
            let b = booking;
            let verb = match b.state {
                gpubook_core::BookingState::PendingApproval => "Waiting for an admin's approval",
                gpubook_core::BookingState::Cancelled => "Cancelled",
                gpubook_core::BookingState::Denied => "Denied",
                gpubook_core::BookingState::Ended => "Ended",
                _ => done,
            };
            println!("{verb}: {}", output::booking_line(b, known));
            for o in also_changed {
                println!("  and moved: {}", output::booking_line(o, known));
            }
        }
        Response::Policy(p) => {
            let pol = &p.policy;
            let fmt = |s: Option<i64>| {
                s.map(|s| gpubook_core::duration::format_duration(chrono::Duration::seconds(s)))
                    .unwrap_or_else(|| "no limit".into())
            };
            println!("Your role: {}", p.role);
            println!("Your GPU-hours this week: {:.1}", p.week_gpu_hours);
            println!(
                "Slot granularity: {}",
                gpubook_core::duration::format_duration(pol.granularity())
            );
            println!("Longest booking: {}", fmt(pol.max_booking_secs));
            println!("Furthest ahead: {}", fmt(pol.max_ahead_secs));
            println!(
                "Weekly quota: {}",
                pol.weekly_quota_gpu_hours
                    .map(|q| format!("{q} GPU-hours"))
                    .unwrap_or_else(|| "no limit".into())
            );
            println!(
                "GPUs at once: {}",
                pol.max_gpus_at_once
                    .map(|q| q.to_string())
                    .unwrap_or_else(|| "no limit".into())
            );
            println!(
                "Beyond these: {}",
                match pol.over_policy {
                    gpubook_core::policy::OverPolicy::Approval => "waits for an admin's approval",
                    gpubook_core::policy::OverPolicy::Refuse => "refused",
                }
            );
        }
        Response::Whoami(w) => println!("{} is {} on {}", w.user, w.role, w.server),
        Response::Subscribed(s) => println!("subscribed at event {}", s.latest),
        Response::Logs(l) => print!("{}", l.data),
        Response::Suggestion(s) => println!("{}", s.says),
        Response::Report(r) => println!("{}", crate::report::table(r, crate::report::By::User)),
        Response::JobEnv(e) => print!("{}", crate::shell::exports(&e.vars)),
        Response::Notify(n) => print!("{}", crate::notify::table(n, "this server")),
        Response::Maintenance(m) => print_json(m),
        Response::UsageSeries(s) => print!("{}", crate::series::text(s)),
    }
}
