//! What an answer cost: its settled usage at the configured prices
//! (`pricing`), in integer nano-dollars so that sums stay exact.

use crate::config::check::{ensure, Fault, Lowered};
use crate::config::{schema, Glob};

use super::Usage;

/// The configured prices; the first entry whose glob matches a model wins.
#[derive(Default)]
pub struct Pricing {
    prices: Vec<Price>,
}

impl Pricing {
    pub fn new(prices: &[Price]) -> Self {
        Self {
            prices: prices.to_vec(),
        }
    }

    /// The cost of `usage` on `model` in nano-USD; `None` when the model has
    /// no price (never a silent zero).
    pub fn cost_nano_usd(&self, model: &str, usage: Usage) -> Option<u64> {
        let price = self.prices.iter().find(|p| p.model.matches(model))?;
        // USD per million tokens is nano-USD per thousandth of a token:
        // tokens x price x 1000 nano-USD. Cached input is part of `input`.
        let cached = usage.cache_read.min(usage.input);
        let nanos = ((usage.input - cached) as f64 * price.input_per_million
            + cached as f64 * price.cached_input_per_million
            + usage.output as f64 * price.output_per_million)
            * 1000.0;
        // Prices are bounded at config time; the cast saturates anyway.
        Some(nanos.round() as u64)
    }
}

/// What a model's tokens cost, in USD per million (validated: finite, not
/// negative).
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub model: Glob,
    pub input_per_million: f64,
    pub output_per_million: f64,
    /// Input tokens read from the prompt cache (the input price when unset
    /// in config: never silently cheaper).
    pub cached_input_per_million: f64,
}

/// A price above this (USD per million tokens) is a typo, not a model.
const MAX_PRICE_PER_MILLION: f64 = 1_000_000.0;

/// The `pricing` section, lowered.
pub fn lower_prices(prices: &[schema::Price]) -> Lowered<Vec<Price>> {
    prices
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let model = Glob::new(&p.model).ok_or_else(|| Fault {
                field: format!("pricing[{i}].model"),
                message: "must not be empty".into(),
            })?;
            let cached = p.cached_input_per_million.unwrap_or(p.input_per_million);
            for (name, value) in [
                ("input_per_million", p.input_per_million),
                ("output_per_million", p.output_per_million),
                ("cached_input_per_million", cached),
            ] {
                ensure(
                    value.is_finite() && (0.0..=MAX_PRICE_PER_MILLION).contains(&value),
                    || format!("pricing[{i}].{name}"),
                    "must be a number of USD between 0 and 1000000",
                )?;
            }
            Ok(Price {
                model,
                input_per_million: p.input_per_million,
                output_per_million: p.output_per_million,
                cached_input_per_million: cached,
            })
        })
        .collect()
}

/// Nano-USD as the micro-USD budgets count in, rounded up: a request that
/// cost anything costs a budget at least one micro-dollar.
pub fn micro_usd(nanos: u64) -> u64 {
    nanos.div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Glob;

    fn price(model: &str, input: f64, output: f64) -> Price {
        Price {
            model: Glob::new(model).unwrap(),
            input_per_million: input,
            output_per_million: output,
            cached_input_per_million: input,
        }
    }

    #[test]
    fn the_first_matching_price_applies_and_unpriced_models_have_no_cost() {
        let pricing = Pricing::new(&[price("gpt-4o-mini", 0.15, 0.60), price("gpt-*", 2.50, 10.0)]);
        let usage = Usage {
            input: 1000,
            output: 500,
            cache_read: 0,
            cache_write: 0,
        };
        // 1000 x 0.15 + 500 x 0.60 = 450 micro-USD.
        assert_eq!(pricing.cost_nano_usd("gpt-4o-mini", usage), Some(450_000));
        // 1000 x 2.50 + 500 x 10 = 7500 micro-USD.
        assert_eq!(pricing.cost_nano_usd("gpt-4o", usage), Some(7_500_000));
        assert_eq!(pricing.cost_nano_usd("claude-3", usage), None);
        let huge = Usage {
            input: u64::MAX,
            output: u64::MAX,
            cache_read: 0,
            cache_write: 0,
        };
        assert_eq!(pricing.cost_nano_usd("gpt-4o", huge), Some(u64::MAX));
    }

    #[test]
    fn cached_input_costs_its_own_price() {
        let mut cheap_cache = price("gpt-4o", 2.50, 10.0);
        cheap_cache.cached_input_per_million = 1.25;
        let pricing = Pricing::new(&[cheap_cache]);
        let usage = Usage {
            input: 1000,
            output: 500,
            cache_read: 800,
            cache_write: 0,
        };
        // 200 x 2.50 + 800 x 1.25 + 500 x 10 = 6500 micro-USD.
        assert_eq!(pricing.cost_nano_usd("gpt-4o", usage), Some(6_500_000));
        // More cached than input (a confused upstream) is capped at input.
        let odd = Usage {
            cache_read: 5000,
            cache_write: 0,
            ..usage
        };
        assert_eq!(pricing.cost_nano_usd("gpt-4o", odd), Some(6_250_000));
    }
}
