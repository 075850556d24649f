//! What the catalog says a failing check puts at stake: its inherent rating
//! on the BSI 200-3 four-step scales and the protection goals it threatens.
//!
//! These are the catalog's data (`mappings.toml` rates each check), so they
//! live here; the register maps a rating onto the matrix the organisation
//! chose (`register::Matrix::rate`), so the catalog does not change when the
//! matrix does.

use serde::{Deserialize, Serialize};

/// The protection goals a risk threatens.
pub const GOALS: [&str; 3] = ["confidentiality", "integrity", "availability"];

/// Likelihood on the BSI 200-3 four-step scale (the catalog's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Likelihood {
    #[serde(rename = "selten")]
    Selten,
    #[serde(rename = "mittel")]
    Mittel,
    #[serde(rename = "häufig")]
    Haeufig,
    #[serde(rename = "sehr häufig")]
    SehrHaeufig,
}

/// Impact on the BSI 200-3 four-step scale (the catalog's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Impact {
    #[serde(rename = "vernachlässigbar")]
    Vernachlaessigbar,
    #[serde(rename = "begrenzt")]
    Begrenzt,
    #[serde(rename = "beträchtlich")]
    Betraechtlich,
    #[serde(rename = "existenzbedrohend")]
    Existenzbedrohend,
}

/// `Display` and `FromStr` from one table of names, so the text a value is
/// written as and the text it is read from cannot drift apart.
macro_rules! text_enum {
    ($t:ty, $($v:ident => $s:literal),+) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $(Self::$v => $s),+ })
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($s => Ok(Self::$v),)+ other => Err(format!("unknown value {other:?}")) }
            }
        }
    };
}
text_enum!(Likelihood, Selten => "selten", Mittel => "mittel", Haeufig => "häufig", SehrHaeufig => "sehr häufig");
text_enum!(Impact, Vernachlaessigbar => "vernachlässigbar", Begrenzt => "begrenzt", Betraechtlich => "beträchtlich", Existenzbedrohend => "existenzbedrohend");
pub(crate) use text_enum;
