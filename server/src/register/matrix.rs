//! Risk matrices: likelihood × impact → level. Two are built in, the ISO/IEC
//! 27005-style 5×5 (the default) and the BSI-Standard 200-3 4×4; the
//! organisation picks one in `config.toml` (`risk.matrix`).
//!
//! Checks carry their inherent rating on the BSI four-step scales (the
//! catalog's data); [`Matrix::rate`] maps it onto the chosen matrix, so the
//! catalog does not change when the matrix does.

use serde::{Deserialize, Serialize};

use crate::compliance::catalog::{Impact, Likelihood};

crate::compliance::catalog::rating::text_enum!(Level, Low => "low", Medium => "medium", High => "high", VeryHigh => "very_high");

/// A risk level, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Low,
    Medium,
    High,
    VeryHigh,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Low, Level::Medium, Level::High, Level::VeryHigh];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MatrixKind {
    /// 5 × 5, scores 1–25: 1–4 low, 5–9 medium, 10–16 high, 20–25 very high.
    #[default]
    #[serde(rename = "iso27005-5x5")]
    Iso27005,
    /// 4 × 4 with the BSI 200-3 categories gering, mittel, hoch, sehr hoch.
    #[serde(rename = "bsi-200-3-4x4")]
    Bsi2003,
}

/// A point on a matrix: 1-based likelihood and impact steps and their level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    pub likelihood: u8,
    pub impact: u8,
    pub level: Level,
}

const ISO_LIKELIHOOD: [&str; 5] = ["rare", "unlikely", "possible", "likely", "almost certain"];
const ISO_IMPACT: [&str; 5] = ["insignificant", "minor", "moderate", "major", "severe"];
const BSI_LIKELIHOOD: [&str; 4] = ["selten", "mittel", "häufig", "sehr häufig"];
const BSI_IMPACT: [&str; 4] = ["vernachlässigbar", "begrenzt", "beträchtlich", "existenzbedrohend"];

/// BSI 200-3 risk categories, rows by likelihood (selten first), columns by
/// impact (vernachlässigbar first).
const BSI_CELLS: [[Level; 4]; 4] = {
    use Level::*;
    [
        [Low, Low, Medium, High],
        [Low, Medium, High, VeryHigh],
        [Medium, Medium, High, VeryHigh],
        [Medium, High, VeryHigh, VeryHigh],
    ]
};

/// A matrix the register rates on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matrix {
    pub kind: MatrixKind,
}

impl Matrix {
    pub fn new(kind: MatrixKind) -> Matrix {
        Matrix { kind }
    }

    /// Number of likelihood (and impact) steps.
    pub fn steps(&self) -> u8 {
        match self.kind {
            MatrixKind::Iso27005 => 5,
            MatrixKind::Bsi2003 => 4,
        }
    }

    pub fn likelihood_label(&self, step: u8) -> &'static str {
        let labels: &[&str] = match self.kind {
            MatrixKind::Iso27005 => &ISO_LIKELIHOOD,
            MatrixKind::Bsi2003 => &BSI_LIKELIHOOD,
        };
        labels.get(usize::from(step.saturating_sub(1))).copied().unwrap_or("?")
    }

    pub fn impact_label(&self, step: u8) -> &'static str {
        let labels: &[&str] = match self.kind {
            MatrixKind::Iso27005 => &ISO_IMPACT,
            MatrixKind::Bsi2003 => &BSI_IMPACT,
        };
        labels.get(usize::from(step.saturating_sub(1))).copied().unwrap_or("?")
    }

    /// The rating at steps `likelihood` and `impact`, each clamped onto the matrix.
    pub fn at(&self, likelihood: u8, impact: u8) -> Rating {
        let (l, i) = (likelihood.clamp(1, self.steps()), impact.clamp(1, self.steps()));
        let level = match self.kind {
            MatrixKind::Iso27005 => match l * i {
                0..=4 => Level::Low,
                5..=9 => Level::Medium,
                10..=16 => Level::High,
                _ => Level::VeryHigh,
            },
            MatrixKind::Bsi2003 => BSI_CELLS[usize::from(l - 1)][usize::from(i - 1)],
        };
        Rating { likelihood: l, impact: i, level }
    }

    /// The rating of a catalog rating on the BSI scales. On the 5×5 matrix
    /// the four steps map to rare/possible/likely/almost certain and
    /// insignificant/minor/major/severe.
    pub fn rate(&self, likelihood: Likelihood, impact: Impact) -> Rating {
        let (l, i) = (likelihood as u8, impact as u8);
        match self.kind {
            MatrixKind::Bsi2003 => self.at(l + 1, i + 1),
            MatrixKind::Iso27005 => self.at([1, 3, 4, 5][usize::from(l)], [1, 2, 4, 5][usize::from(i)]),
        }
    }

    /// Parses a likelihood or impact given as a step number or a label of this matrix.
    pub fn parse_step(&self, text: &str, impact: bool) -> Result<u8, String> {
        if let Ok(n) = text.parse::<u8>() {
            if (1..=self.steps()).contains(&n) {
                return Ok(n);
            }
            return Err(format!("{n} is outside 1..={}", self.steps()));
        }
        (1..=self.steps())
            .find(|s| {
                let label = if impact { self.impact_label(*s) } else { self.likelihood_label(*s) };
                label.eq_ignore_ascii_case(text)
            })
            .ok_or_else(|| {
                let labels: Vec<&str> = (1..=self.steps())
                    .map(|s| if impact { self.impact_label(s) } else { self.likelihood_label(s) })
                    .collect();
                format!("{text:?}: use 1..={} or one of {}", self.steps(), labels.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_levels_follow_the_score_bands() {
        let m = Matrix::new(MatrixKind::Iso27005);
        assert_eq!(m.at(1, 4).level, Level::Low);
        assert_eq!(m.at(1, 5).level, Level::Medium);
        assert_eq!(m.at(3, 3).level, Level::Medium);
        assert_eq!(m.at(2, 5).level, Level::High);
        assert_eq!(m.at(4, 4).level, Level::High);
        assert_eq!(m.at(4, 5).level, Level::VeryHigh);
        // Out-of-range steps clamp rather than panic.
        assert_eq!(m.at(9, 0), m.at(5, 1));
    }

    #[test]
    fn bsi_matrix_is_the_200_3_table() {
        let m = Matrix::new(MatrixKind::Bsi2003);
        assert_eq!(m.rate(Likelihood::Selten, Impact::Vernachlaessigbar).level, Level::Low);
        assert_eq!(m.rate(Likelihood::Selten, Impact::Existenzbedrohend).level, Level::High);
        assert_eq!(m.rate(Likelihood::Mittel, Impact::Betraechtlich).level, Level::High);
        assert_eq!(m.rate(Likelihood::SehrHaeufig, Impact::Begrenzt).level, Level::High);
        assert_eq!(m.rate(Likelihood::SehrHaeufig, Impact::Betraechtlich).level, Level::VeryHigh);
    }

    #[test]
    fn both_matrices_are_monotone_and_span_every_level() {
        for kind in [MatrixKind::Iso27005, MatrixKind::Bsi2003] {
            let m = Matrix::new(kind);
            let n = m.steps();
            // A step up in likelihood or impact never lowers the level.
            for l in 1..=n {
                for i in 1..=n {
                    let here = m.at(l, i).level;
                    if l < n {
                        assert!(
                            here <= m.at(l + 1, i).level,
                            "{kind:?}: likelihood {l}→{} at impact {i}",
                            l + 1
                        );
                    }
                    if i < n {
                        assert!(
                            here <= m.at(l, i + 1).level,
                            "{kind:?}: impact {i}→{} at likelihood {l}",
                            i + 1
                        );
                    }
                }
            }
            // The corners are the extremes, and every level is reachable.
            assert_eq!((m.at(1, 1).level, m.at(n, n).level), (Level::Low, Level::VeryHigh), "{kind:?}");
            for level in Level::ALL {
                assert!(
                    (1..=n).any(|l| (1..=n).any(|i| m.at(l, i).level == level)),
                    "{kind:?}: no cell is {level}"
                );
            }
        }
    }

    #[test]
    fn catalog_ratings_map_onto_both_matrices() {
        let iso = Matrix::new(MatrixKind::Iso27005);
        let r = iso.rate(Likelihood::Mittel, Impact::Betraechtlich);
        assert_eq!((r.likelihood, r.impact, r.level), (3, 4, Level::High));
        let r = iso.rate(Likelihood::Selten, Impact::Begrenzt);
        assert_eq!((r.likelihood, r.impact, r.level), (1, 2, Level::Low));
        assert_eq!(iso.likelihood_label(5), "almost certain");
        assert_eq!(iso.parse_step("Likely", false), Ok(4));
        assert_eq!(iso.parse_step("2", true), Ok(2));
        assert!(iso.parse_step("6", true).is_err());
        assert!(iso.parse_step("often", false).unwrap_err().contains("rare"));
    }

    #[test]
    fn scales_round_trip_as_text() {
        for l in [Likelihood::Selten, Likelihood::Mittel, Likelihood::Haeufig, Likelihood::SehrHaeufig] {
            assert_eq!(l.to_string().parse::<Likelihood>().unwrap(), l);
        }
        for l in Level::ALL {
            assert_eq!(l.to_string().parse::<Level>().unwrap(), l);
        }
        assert_eq!("beträchtlich".parse::<Impact>().unwrap(), Impact::Betraechtlich);
        assert!("high".parse::<Impact>().is_err());
    }
}
