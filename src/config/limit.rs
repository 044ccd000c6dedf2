use backstop_core::config::{ConfigError, Validate};
use backstop_limit::{
    AdaptiveLimitConfig, Bulkhead, BulkheadConfig, KeyedMultiRateLimiter, KeyedRateLimiter, Quota,
    QuotaConfig,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[limit]`: per-user request and token quotas and a bulkhead on provider calls.
///
/// ```toml
/// [limit.requests]          # per user
/// rate = 60
/// period = "1m"
/// burst = 10
///
/// [limit.tokens]            # per user, charged by each call's token count
/// rate = 100000
/// period = "1m"
///
/// [limit.overrides.premium-tenant.requests]
/// rate = 600
/// period = "1m"
///
/// [limit.bulkhead]
/// max_concurrent = 32
/// max_queued = 256
///
/// [limit.adaptive]          # an in-flight limit found from measured latency
/// algorithm = { kind = "gradient2" }
/// initial_limit = 20
/// classes = [
///     { name = "critical", share = 0.5, max_queued = 64, queue_timeout = "500ms" },
///     { name = "background" },
/// ]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSection {
    /// Requests each user may make; `None` admits every request.
    pub requests: Option<QuotaConfig>,
    /// Tokens each user may spend (a weighted quota: each call costs its token count).
    pub tokens: Option<QuotaConfig>,
    /// Per-user quotas that replace the defaults above (a premium tenant).
    pub overrides: BTreeMap<String, LimitOverride>,
    /// Most distinct users tracked at once (at most [`LimitSection::MAX_KEYS`]); idle ones are swept to
    /// make room.
    pub max_keys: Option<usize>,
    /// At most this many provider calls in flight, with a bounded wait queue.
    pub bulkhead: Option<BulkheadConfig>,
    /// An in-flight limit on provider calls that follows measured latency (AIMD, Vegas or
    /// Gradient2), with priority classes shed lowest first; build it with
    /// [`AdaptiveLimitConfig::build`].
    pub adaptive: Option<AdaptiveLimitConfig>,
}

/// One user's replacement quotas under `[limit.overrides.<user>]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitOverride {
    /// Replaces `limit.requests` for this user.
    pub requests: Option<QuotaConfig>,
    /// Replaces `limit.tokens` for this user.
    pub tokens: Option<QuotaConfig>,
}

impl Validate for LimitSection {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_quota(&self.requests, "requests")?;
        validate_quota(&self.tokens, "tokens")?;
        for (user, quotas) in &self.overrides {
            let section = format!("overrides.{user}");
            validate_quota(&quotas.requests, "requests").map_err(|e| e.within(&section))?;
            validate_quota(&quotas.tokens, "tokens").map_err(|e| e.within(&section))?;
            if quotas.requests.is_some() && self.requests.is_none() {
                return Err(ConfigError::new(
                    format!("{section}.requests"),
                    "needs a default `limit.requests` to override",
                ));
            }
            if quotas.tokens.is_some() && self.tokens.is_none() {
                return Err(ConfigError::new(
                    format!("{section}.tokens"),
                    "needs a default `limit.tokens` to override",
                ));
            }
        }
        if let Some(max_keys) = self.max_keys {
            backstop_core::config::ensure(max_keys > 0, "max_keys", "must be at least 1")?;
            backstop_core::config::ensure_at_most(
                "max_keys",
                max_keys as u64,
                Self::MAX_KEYS as u64,
            )?;
        }
        if let Some(bulkhead) = &self.bulkhead {
            bulkhead.validate().map_err(|e| e.within("bulkhead"))?;
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate().map_err(|e| e.within("adaptive"))?;
        }
        Ok(())
    }
}

impl LimitSection {
    /// The largest `limit.max_keys` accepted: 2^24 users per limiter.
    pub const MAX_KEYS: usize = 1 << 24;

    /// The per-user request limiter, with overrides applied; `None` when
    /// `limit.requests` is not set.
    pub fn requests_limiter(&self) -> Result<Option<KeyedRateLimiter<String>>, ConfigError> {
        self.keyed(&self.requests, |o| &o.requests, "requests")
    }

    /// The per-user token limiter (charge it with `check_key_n(user, tokens)`), with
    /// overrides applied; `None` when `limit.tokens` is not set.
    pub fn tokens_limiter(&self) -> Result<Option<KeyedRateLimiter<String>>, ConfigError> {
        self.keyed(&self.tokens, |o| &o.tokens, "tokens")
    }

    /// Requests and tokens per user in one limiter, charged together with
    /// `check_key_costs(user, &[1, tokens])`: a call refused on either budget spends
    /// neither. A quota the section leaves unset takes the given default; per-user
    /// overrides apply quota by quota.
    ///
    /// ```
    /// use backstop::config::BackstopConfig;
    /// use backstop::limit::Quota;
    ///
    /// let config = BackstopConfig::from_toml_str(
    ///     "[limit.tokens]\nrate = 1000\nperiod = \"1m\"\n",
    /// )
    /// .unwrap();
    /// let budgets = config
    ///     .limit
    ///     .unwrap()
    ///     .budget_limiter(Quota::per_minute(3).unwrap(), Quota::per_minute(1).unwrap())
    ///     .unwrap();
    /// let ann = "ann".to_string();
    /// assert!(budgets.check_key_costs(&ann, &[1, 800]).is_ok());
    /// assert!(budgets.check_key_costs(&ann, &[1, 800]).is_err(), "over the tokens");
    /// assert!(budgets.check_key_costs(&ann, &[1, 200]).is_ok(), "no request spent");
    /// ```
    pub fn budget_limiter(
        &self,
        default_requests: Quota,
        default_tokens: Quota,
    ) -> Result<KeyedMultiRateLimiter<String>, ConfigError> {
        let build = |quota: &Option<QuotaConfig>, default: Quota, path: &str| match quota {
            Some(quota) => quota.build().map_err(|e| e.within(path)),
            None => Ok(default),
        };
        let requests = build(&self.requests, default_requests, "limit.requests")?;
        let tokens = build(&self.tokens, default_tokens, "limit.tokens")?;
        let mut limiter = KeyedMultiRateLimiter::new(vec![requests, tokens])?
            .with_quota_names(["requests", "tokens"])?;
        if let Some(max_keys) = self.max_keys {
            limiter = limiter.with_max_keys(max_keys);
        }
        for (user, quotas) in &self.overrides {
            let section = format!("limit.overrides.{user}");
            let quotas = vec![
                build(&quotas.requests, requests, &format!("{section}.requests"))?,
                build(&quotas.tokens, tokens, &format!("{section}.tokens"))?,
            ];
            limiter.set_quotas(user.clone(), quotas)?;
        }
        Ok(limiter)
    }

    /// The bulkhead, or `None` when `limit.bulkhead` is not set.
    pub fn bulkhead(&self) -> Result<Option<Bulkhead>, ConfigError> {
        self.bulkhead
            .map(|config| Bulkhead::new(config).map_err(|e| e.within("limit.bulkhead")))
            .transpose()
    }

    fn keyed(
        &self,
        default: &Option<QuotaConfig>,
        pick: impl Fn(&LimitOverride) -> &Option<QuotaConfig>,
        name: &str,
    ) -> Result<Option<KeyedRateLimiter<String>>, ConfigError> {
        let Some(default) = default else {
            return Ok(None);
        };
        let quota = default
            .build()
            .map_err(|e| e.within(&format!("limit.{name}")))?;
        let mut limiter = KeyedRateLimiter::new(quota);
        if let Some(max_keys) = self.max_keys {
            limiter = limiter.with_max_keys(max_keys);
        }
        for (user, quotas) in &self.overrides {
            if let Some(quota) = pick(quotas) {
                let quota = quota
                    .build()
                    .map_err(|e| e.within(&format!("limit.overrides.{user}.{name}")))?;
                limiter.set_quota(user.clone(), quota);
            }
        }
        Ok(Some(limiter))
    }
}

fn validate_quota(quota: &Option<QuotaConfig>, name: &str) -> Result<(), ConfigError> {
    match quota {
        Some(quota) => quota.validate().map_err(|e| e.within(name)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_key_cap_names_its_field() {
        let section = LimitSection {
            max_keys: Some(1 << 40),
            ..LimitSection::default()
        };
        assert_eq!(section.validate().unwrap_err().field(), "max_keys");
        let section = LimitSection {
            max_keys: Some(LimitSection::MAX_KEYS),
            ..LimitSection::default()
        };
        assert!(section.validate().is_ok());
    }

    #[test]
    fn an_adaptive_limit_reads_with_its_classes_and_a_bad_one_names_its_field() {
        let config = crate::config::BackstopConfig::from_toml_str(
            "[limit.adaptive]\nalgorithm = { kind = \"aimd\", backoff_ratio = 0.8 }\n\
             initial_limit = 8\nclasses = [{ name = \"critical\", share = 0.5, max_queued = 4, \
             queue_timeout = \"250ms\" }, { name = \"background\" }]\n",
        )
        .unwrap();
        let adaptive = config.limit.unwrap().adaptive.unwrap();
        let limiter = adaptive.build().unwrap();
        assert_eq!(limiter.limit(), 8);
        assert!(limiter.class("critical").is_some() && limiter.class("background").is_some());

        let error = crate::config::BackstopConfig::from_toml_str(
            "[limit.adaptive]\ninitial_limit = 8\nmax_limit = 4\n",
        )
        .unwrap_err();
        assert!(
            error
                .field()
                .is_some_and(|f| f.starts_with("limit.adaptive.")),
            "{error}"
        );
    }
}
