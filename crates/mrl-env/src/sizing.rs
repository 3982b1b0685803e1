//! Action spaces of the trading env: target positions (Buy / Sell / Hold) and position sizing
//! (Increase / Decrease / Maintain / Close over a fractional position).
//!
//! Both map an action and the current position `q_prev ∈ [−1, 1]` to the new position `q`;
//! the accounting that follows (cost, return, equity) is the same for both, see
//! [`TradingEnv`](crate::TradingEnv).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Tolerance when snapping a position onto the sizing grid.
const GRID_EPS: f64 = 1e-9;

/// The default action space: each action sets a target position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetAction {
    /// Go long: `q = +1`.
    Buy = 0,
    /// Go short: `q = −1`.
    Sell = 1,
    /// Keep the current position.
    Hold = 2,
}

/// The position-sizing action space: moves along a grid of fractional positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SizingAction {
    /// Next grid point up, capped at `+1`.
    Increase = 0,
    /// Next grid point down, capped at `−1`.
    Decrease = 1,
    /// Keep the current position.
    Maintain = 2,
    /// Go flat: `q = 0`.
    Close = 3,
}

impl TargetAction {
    /// All actions, by index.
    pub const ALL: [TargetAction; 3] = [TargetAction::Buy, TargetAction::Sell, TargetAction::Hold];

    /// The action with this index, `None` out of range.
    pub fn from_index(action: usize) -> Option<Self> {
        Self::ALL.get(action).copied()
    }

    /// The action's index (what [`Env::step`](crate::Env::step) takes).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl SizingAction {
    /// All actions, by index.
    pub const ALL: [SizingAction; 4] = [
        SizingAction::Increase,
        SizingAction::Decrease,
        SizingAction::Maintain,
        SizingAction::Close,
    ];

    /// The action with this index, `None` out of range.
    pub fn from_index(action: usize) -> Option<Self> {
        Self::ALL.get(action).copied()
    }

    /// The action's index (what [`Env::step`](crate::Env::step) takes).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Which actions a [`TradingEnv`](crate::TradingEnv) takes.
///
/// Read through `ActionSpaceToml`, a plain struct: serde ignores extra keys beside the
/// tag of a field-less variant even with `deny_unknown_fields` (serde-rs/serde#2123), so
/// `{ kind = "target", position_stepp = 0.25 }` would load as `target` silently.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "ActionSpaceToml")]
pub enum ActionSpace {
    /// [`TargetAction`]: Buy = 0, Sell = 1, Hold = 2 (3 actions).
    #[default]
    Target,
    /// [`SizingAction`]: Increase = 0, Decrease = 1, Maintain = 2, Close = 3 (4 actions) over
    /// the grid `{k·position_step} ∩ (−1, 1)` plus `±1`.
    Sizing {
        /// Grid step of the position, in `(0, 1]`; 0.25 gives the nine positions
        /// −1, −0.75, …, 1.
        position_step: f64,
    },
}

/// The TOML form of an [`ActionSpace`]: `kind` and every variant's fields, unknown keys
/// refused; a field of another kind is an error naming both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionSpaceToml {
    kind: ActionKind,
    position_step: Option<f64>,
}

/// The kinds of [`ActionSpace`].
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ActionKind {
    Target,
    Sizing,
}

impl TryFrom<ActionSpaceToml> for ActionSpace {
    type Error = String;

    fn try_from(raw: ActionSpaceToml) -> std::result::Result<Self, String> {
        match (raw.kind, raw.position_step) {
            (ActionKind::Target, None) => Ok(ActionSpace::Target),
            (ActionKind::Target, Some(_)) => {
                Err("position_step belongs to kind = \"sizing\", not \"target\"".into())
            }
            (ActionKind::Sizing, Some(position_step)) => Ok(ActionSpace::Sizing { position_step }),
            (ActionKind::Sizing, None) => Err("missing field `position_step`".into()),
        }
    }
}

impl ActionSpace {
    /// Position sizing with the default step 0.25.
    pub const SIZING: ActionSpace = ActionSpace::Sizing {
        position_step: 0.25,
    };

    /// Number of actions: 3 or 4.
    pub fn n_actions(&self) -> usize {
        match self {
            ActionSpace::Target => TargetAction::ALL.len(),
            ActionSpace::Sizing { .. } => SizingAction::ALL.len(),
        }
    }

    /// Checks `position_step ∈ (0, 1]`.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ActionSpace::Target => Ok(()),
            ActionSpace::Sizing { position_step } => {
                if position_step > 0.0 && position_step <= 1.0 {
                    Ok(())
                } else {
                    Err(Error::InvalidConfig {
                        field: "position_step",
                        value: position_step.to_string(),
                        reason: "expected a value in (0, 1]",
                    })
                }
            }
        }
    }

    /// The position after `action` from `position`; an error for an action out of range.
    pub fn next_position(&self, action: usize, position: f64) -> Result<f64> {
        let invalid = || Error::InvalidAction {
            action,
            n_actions: self.n_actions(),
        };
        match *self {
            ActionSpace::Target => Ok(
                match TargetAction::from_index(action).ok_or_else(invalid)? {
                    TargetAction::Buy => 1.0,
                    TargetAction::Sell => -1.0,
                    TargetAction::Hold => position,
                },
            ),
            ActionSpace::Sizing { position_step } => Ok(
                match SizingAction::from_index(action).ok_or_else(invalid)? {
                    SizingAction::Increase => grid_up(position, position_step),
                    SizingAction::Decrease => -grid_up(-position, position_step),
                    SizingAction::Maintain => position,
                    SizingAction::Close => 0.0,
                },
            ),
        }
    }
}

/// The smallest grid point above `position`: `min(1, (⌊q/step + ε⌋ + 1)·step)`.
///
/// Positions are always recomputed as `k·step` (or ±1), so repeated moves never drift.
fn grid_up(position: f64, step: f64) -> f64 {
    let k = (position / step + GRID_EPS).floor() + 1.0;
    (k * step).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_actions_set_or_keep_the_position() {
        let space = ActionSpace::Target;
        assert_eq!(space.next_position(0, -1.0).unwrap(), 1.0);
        assert_eq!(space.next_position(1, 1.0).unwrap(), -1.0);
        assert_eq!(space.next_position(2, 0.5).unwrap(), 0.5);
        assert!(matches!(
            space.next_position(3, 0.0),
            Err(Error::InvalidAction {
                action: 3,
                n_actions: 3
            })
        ));
    }

    #[test]
    fn sizing_walks_the_grid_and_caps_at_one() {
        let space = ActionSpace::SIZING;
        let mut q = 0.0;
        let mut seen = vec![];
        for _ in 0..6 {
            q = space
                .next_position(SizingAction::Increase.index(), q)
                .unwrap();
            seen.push(q);
        }
        assert_eq!(seen, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
        for _ in 0..9 {
            q = space
                .next_position(SizingAction::Decrease.index(), q)
                .unwrap();
        }
        assert_eq!(q, -1.0);
        assert_eq!(
            space.next_position(SizingAction::Close.index(), q).unwrap(),
            0.0
        );
        assert_eq!(
            space
                .next_position(SizingAction::Maintain.index(), q)
                .unwrap(),
            q
        );
    }

    #[test]
    fn uneven_steps_reach_both_bounds_without_drift() {
        let space = ActionSpace::Sizing { position_step: 0.3 };
        let mut q = 0.0;
        for _ in 0..4 {
            q = space.next_position(0, q).unwrap();
        }
        assert_eq!(q, 1.0);
        q = space.next_position(1, q).unwrap();
        assert!((q - 0.9).abs() < 1e-12, "{q}");
        for _ in 0..1000 {
            q = space.next_position(0, q).unwrap();
            q = space.next_position(1, q).unwrap();
        }
        assert!((q - 0.9).abs() < 1e-12, "{q}");
    }

    #[test]
    fn rejects_bad_steps() {
        for step in [0.0, -0.1, 1.5, f64::NAN] {
            let space = ActionSpace::Sizing {
                position_step: step,
            };
            assert!(matches!(
                space.validate(),
                Err(Error::InvalidConfig {
                    field: "position_step",
                    ..
                })
            ));
        }
        assert!(ActionSpace::SIZING.validate().is_ok());
    }

    #[test]
    fn serde_names_are_stable() {
        let json = serde_json::to_string(&ActionSpace::SIZING).unwrap();
        assert_eq!(json, r#"{"kind":"sizing","position_step":0.25}"#);
        let back: ActionSpace = serde_json::from_str(r#"{"kind":"target"}"#).unwrap();
        assert_eq!(back, ActionSpace::Target);
    }
}
