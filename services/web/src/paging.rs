//! `page` and `per_page` query parameters, as every listing takes them.

use crate::ApiError;

/// The most items one page may hold.
pub const MAX_PER_PAGE: u32 = 100;

/// A checked page request: `page` from 1, `per_page` from 1 to [`MAX_PER_PAGE`] (20 when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: u32,
    pub per_page: u32,
}

impl Paging {
    pub fn new(page: Option<u32>, per_page: Option<u32>) -> Result<Self, ApiError> {
        let paging = Self {
            page: page.unwrap_or(1),
            per_page: per_page.unwrap_or(20),
        };
        if paging.page == 0 {
            return Err(ApiError::unprocessable("page starts at 1"));
        }
        if !(1..=MAX_PER_PAGE).contains(&paging.per_page) {
            return Err(ApiError::unprocessable(format!(
                "per_page must be 1 to {MAX_PER_PAGE}"
            )));
        }
        Ok(paging)
    }

    /// Rows to skip.
    pub fn offset(self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_start_at_one_and_hold_one_to_a_hundred() {
        assert_eq!(
            Paging::new(None, None).unwrap(),
            Paging {
                page: 1,
                per_page: 20
            }
        );
        assert_eq!(Paging::new(Some(3), Some(100)).unwrap().offset(), 200);
        assert!(Paging::new(Some(0), None).is_err());
        assert!(Paging::new(None, Some(0)).is_err());
        assert!(Paging::new(None, Some(101)).is_err());
    }
}
