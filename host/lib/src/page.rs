//! Pages of a list: `limit` items after the item `after`, in the list's
//! own order (chats and files by `(created_at, id)`), as the hosted chat
//! and file APIs answer them.

use crate::error::Error;
use serde::Serialize;
use uuid::Uuid;

/// How many items a page has when the caller does not say.
pub const DEFAULT_LIMIT: u64 = 100;
/// The most items a page may have.
pub const MAX_LIMIT: u64 = 1000;

/// Which page of a list: checked when made, so a bad limit never reaches a
/// call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    limit: usize,
    after: Option<Uuid>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: DEFAULT_LIMIT as usize,
            after: None,
        }
    }
}

impl PageRequest {
    /// At most `limit` items (default [`DEFAULT_LIMIT`], from 1 to
    /// [`MAX_LIMIT`]: otherwise `invalid_limit`) after the item `after`
    /// (from the start without one).
    pub fn new(limit: Option<u64>, after: Option<Uuid>) -> Result<PageRequest, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::InvalidLimit(limit));
        }
        Ok(PageRequest {
            limit: limit as usize,
            after,
        })
    }

    /// This page of `items` (a whole list, in order), whose ids `id`
    /// gives. An `after` that is not one of them is `after_not_found`: it
    /// names no item the caller can see.
    pub fn cut<T>(&self, items: Vec<T>, id: impl Fn(&T) -> Uuid) -> Result<Page<T>, Error> {
        let start = match self.after {
            Some(after) => {
                items
                    .iter()
                    .position(|item| id(item) == after)
                    .ok_or(Error::AfterNotFound(after))?
                    + 1
            }
            None => 0,
        };
        let has_more = items.len() - start > self.limit;
        let data: Vec<T> = items.into_iter().skip(start).take(self.limit).collect();
        let last_id = data.last().map(&id);
        Ok(Page {
            data,
            has_more,
            last_id,
        })
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The items, in the list's order.
    pub data: Vec<T>,
    /// Whether items follow this page (ask again with `after` = `last_id`).
    pub has_more: bool,
    /// The id of the page's last item; `null` for an empty page.
    pub last_id: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    #[test]
    fn pages_walk_the_whole_list_once_in_order() {
        let all = ids(7);
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = PageRequest::new(Some(3), after)
                .unwrap()
                .cut(all.clone(), |id| *id)
                .unwrap();
            seen.extend(page.data.iter().copied());
            after = page.last_id;
            if !page.has_more {
                break;
            }
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn a_page_that_ends_the_list_exactly_has_no_more() {
        let all = ids(4);
        let page = PageRequest::new(Some(2), Some(all[1]))
            .unwrap()
            .cut(all.clone(), |id| *id)
            .unwrap();
        assert_eq!(page.data, all[2..]);
        assert!(!page.has_more);
        assert_eq!(page.last_id, Some(all[3]));
    }

    #[test]
    fn an_empty_list_is_one_empty_page() {
        let page = PageRequest::default()
            .cut(Vec::<Uuid>::new(), |id| *id)
            .unwrap();
        assert_eq!(
            (page.data.len(), page.has_more, page.last_id),
            (0, false, None)
        );
    }

    #[test]
    fn limits_outside_one_to_a_thousand_are_refused() {
        for limit in [0, MAX_LIMIT + 1, u64::MAX] {
            assert_eq!(
                PageRequest::new(Some(limit), None),
                Err(Error::InvalidLimit(limit))
            );
        }
        assert!(PageRequest::new(Some(MAX_LIMIT), None).is_ok());
        assert!(PageRequest::new(Some(1), None).is_ok());
    }

    #[test]
    fn an_after_that_is_not_in_the_list_is_refused() {
        let stranger = Uuid::now_v7();
        assert_eq!(
            PageRequest::new(None, Some(stranger))
                .unwrap()
                .cut(ids(3), |id| *id),
            Err(Error::AfterNotFound(stranger))
        );
    }
}
