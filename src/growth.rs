//! How the queues each location keeps grow. 50,000 locations are held at once, each with
//! a ring of readings, anomaly lists and skill queues: doubling would leave up to half of
//! every one unused, so they grow by a quarter.

use std::collections::VecDeque;

/// Makes room in `queue` for `needed` more items: when it lacks it, grows it by a quarter
/// of its length (at least `min_step`, at least `needed`), but not past `most` items
/// unless `needed` asks for more.
pub fn grow_by_quarter<T>(queue: &mut VecDeque<T>, needed: usize, min_step: usize, most: usize) {
    let len = queue.len();
    if queue.capacity() - len >= needed {
        return;
    }
    let step = (len / 4).max(min_step).max(needed);
    let target = (len + step).min(most.max(len + needed));
    queue.reserve_exact(target - len);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacities(min_step: usize, most: usize, pushes: usize) -> Vec<usize> {
        let mut queue = VecDeque::new();
        let mut seen = Vec::new();
        for i in 0..pushes {
            grow_by_quarter(&mut queue, 1, min_step, most);
            queue.push_back(i);
            if seen.last() != Some(&queue.capacity()) {
                seen.push(queue.capacity());
            }
        }
        seen
    }

    #[test]
    fn grows_by_a_quarter_from_the_smallest_step() {
        assert_eq!(capacities(4, usize::MAX, 24), [4, 8, 12, 16, 20, 25]);
        assert_eq!(capacities(1, usize::MAX, 6), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn stops_at_the_most_it_will_hold_unless_more_is_needed() {
        assert_eq!(capacities(4, 10, 12), [4, 8, 10, 11, 12]);
    }
}
