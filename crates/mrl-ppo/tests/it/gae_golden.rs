//! GAE against `fixtures/golden/gae.json` (float64, ~1e-12).

use mrl_ppo::{GaeConfig, gae_with_dones, normalize_advantages};

use crate::json::{assert_close, golden, num, vec1};

#[test]
fn every_golden_gae_case_matches() {
    let file = golden("gae.json");
    let config = GaeConfig {
        gamma: num(&file["config"]["gamma"]),
        lambda: num(&file["config"]["lambda"]),
    };
    let cases = file["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let rewards = vec1(&case["rewards"]);
        let values = vec1(&case["values"]);
        let dones: Vec<bool> = vec1(&case["dones"]).iter().map(|&d| d != 0.0).collect();
        let out =
            gae_with_dones(&rewards, &values, &dones, num(&case["last_value"]), &config).unwrap();
        assert_close(
            name,
            &out.advantages,
            &vec1(&case["advantages"]),
            1e-12,
            0.0,
        );
        assert_close(name, &out.returns, &vec1(&case["returns"]), 1e-12, 0.0);
        let mut normalized = out.advantages.clone();
        normalize_advantages(&mut normalized, None);
        assert_close(
            name,
            &normalized,
            &vec1(&case["advantages_normalized"]),
            1e-12,
            0.0,
        );
    }
}

#[test]
fn trial_scopes_reproduce_the_two_trial_cases() {
    use mrl_ppo::{GaeScope, TrialSteps, gae};
    let file = golden("gae.json");
    let config = GaeConfig::default();
    let cases = file["cases"].as_array().unwrap();
    let find = |name: &str| cases.iter().find(|c| c["name"] == name).unwrap();
    let per_episode = find("trial_600");
    let cross = find("trial_600_cross_episode");
    let rewards = vec1(&per_episode["rewards"]);
    let values = vec1(&per_episode["values"]);
    let len = rewards.len();
    // Three episodes of 200 steps, each ending in a terminal state.
    let episode_end: Vec<bool> = (0..len).map(|t| t % 200 == 199).collect();
    let steps = TrialSteps {
        episode_end: &episode_end,
        terminated: &episode_end,
        bootstrap: &vec![0.0; len],
        valid: &vec![true; len],
        trial_truncated: false,
    };
    for (scope, case) in [(GaeScope::Episode, per_episode), (GaeScope::Trial, cross)] {
        let ends = steps.step_ends(scope).unwrap();
        let out = gae(&rewards, &values, &ends, Some(steps.valid), &config).unwrap();
        assert_close(
            &format!("{scope:?}"),
            &out.advantages,
            &vec1(&case["advantages"]),
            1e-12,
            0.0,
        );
        assert_close(
            &format!("{scope:?}"),
            &out.returns,
            &vec1(&case["returns"]),
            1e-12,
            0.0,
        );
    }
}

#[test]
fn truncated_trial_bootstraps_like_the_golden_case() {
    use mrl_ppo::{GaeScope, TrialSteps, gae};
    let file = golden("gae.json");
    let case = file["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "truncated_bootstrap")
        .unwrap();
    let rewards = vec1(&case["rewards"]);
    let values = vec1(&case["values"]);
    let len = rewards.len();
    let mut bootstrap = vec![0.0; len];
    bootstrap[len - 1] = num(&case["last_value"]);
    let no_end = vec![false; len];
    let steps = TrialSteps {
        episode_end: &no_end,
        terminated: &no_end,
        bootstrap: &bootstrap,
        valid: &vec![true; len],
        trial_truncated: true,
    };
    let ends = steps.step_ends(GaeScope::Trial).unwrap();
    let out = gae(&rewards, &values, &ends, None, &GaeConfig::default()).unwrap();
    assert_close(
        "truncated",
        &out.advantages,
        &vec1(&case["advantages"]),
        1e-12,
        0.0,
    );
}
