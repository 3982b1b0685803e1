//! mrl: meta-reinforcement learning for trading.

pub use mrl_agent as agent;
pub use mrl_backtest as backtest;
pub use mrl_data as data;
pub use mrl_env as env;
pub use mrl_features as features;
pub use mrl_ppo as ppo;
