//! Stage-in and save events in words, for `gpubook watch`: the progress line of a copy, what
//! was saved and where, and why a transfer failed.

use gpubook_core::size::format_size;
use gpubook_core::Note;

/// A transfer note as the tail of an event line; empty for other notes.
pub fn note_text(note: &Note) -> String {
    match note {
        Note::Stage {
            name,
            done_bytes,
            total_bytes,
            copied_files,
            kept_files,
            dir,
            late,
        } => {
            let pct = (*done_bytes as f64 / (*total_bytes).max(1) as f64 * 100.0).min(100.0);
            let what = if name.is_empty() {
                String::new()
            } else {
                format!("{name}: ")
            };
            format!(
                " ({what}{} of {} ({pct:.0} %), {copied_files} files copied, {kept_files} \
                 already there; in {dir}{})",
                format_size(*done_bytes),
                format_size(*total_bytes),
                if *late {
                    "; at this pace it will not be ready when the slot starts: the job waits"
                } else {
                    ""
                }
            )
        }
        Note::TransferFailed { reason, attempts } => {
            format!(" ({reason}; {attempts} tries)")
        }
        Note::Saved { to, files } => {
            let bytes: u64 = files.iter().map(|f| f.size).sum();
            let names: Vec<&str> = files.iter().take(5).map(|f| f.name.as_str()).collect();
            let more = files.len().saturating_sub(names.len());
            format!(
                " ({} files, {}, to {to}: {}{}; checksums verified)",
                files.len(),
                format_size(bytes),
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        }
        _ => String::new(),
    }
}
