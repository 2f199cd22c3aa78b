//! Words of a log message, for word search without a text index: the collector stores each
//! message's distinct lower-cased words in an array with a multikey index, and search asks
//! for documents whose array holds all the query's words.

/// Words kept per message at most; a message with more distinct words is searchable by its
/// first ones only. Bounds the index entries one document adds.
pub const MAX_WORDS_PER_MESSAGE: usize = 128;
/// Longest word kept, in bytes; longer runs (hashes, base64) are not searchable as words.
pub const MAX_WORD_BYTES: usize = 48;

/// The distinct words of `text` in order of first appearance: maximal runs of letters and
/// digits, lower-cased, at most [`MAX_WORD_BYTES`] long, at most [`MAX_WORDS_PER_MESSAGE`].
pub fn message_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in split_words(text) {
        if words.len() == MAX_WORDS_PER_MESSAGE {
            break;
        }
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

/// The words of a search query, split and normalised exactly as messages are; words too
/// long to have been stored are kept, so the query honestly matches nothing.
pub fn query_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in query
        .split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
    {
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

fn split_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty() && word.len() <= MAX_WORD_BYTES)
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn words_are_lowercased_distinct_runs_of_letters_and_digits() {
        assert_eq!(
            message_words("Payment FAILED for order #42: card_declined (payment)"),
            ["payment", "failed", "for", "order", "42", "card", "declined"]
        );
        assert_eq!(message_words("Über größe"), ["über", "größe"]);
        assert!(message_words("  --- ").is_empty());
    }

    #[test]
    fn long_runs_and_many_words_are_bounded() {
        let hash = "a".repeat(MAX_WORD_BYTES + 1);
        assert_eq!(message_words(&format!("id {hash} ok")), ["id", "ok"]);
        let many: String = (0..500).map(|n| format!("w{n} ")).collect();
        assert_eq!(message_words(&many).len(), MAX_WORDS_PER_MESSAGE);
    }

    proptest! {
        #[test]
        fn every_query_word_of_a_message_is_found_in_its_words(message in "([a-zA-Z0-9]{1,20}[ .,:-]){0,40}") {
            let stored = message_words(&message);
            for word in query_words(&message) {
                prop_assert!(stored.contains(&word));
            }
        }
    }
}
