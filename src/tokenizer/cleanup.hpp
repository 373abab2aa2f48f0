// transformers' `clean_up_tokenization_spaces`: a text post-pass of PreTrainedTokenizer.decode
// that removes the space a word-joining decoder puts before punctuation and English clitics.
#pragma once

#include <filesystem>
#include <string>

namespace xcaption {

/// " ." -> ".", " ?" -> "?", " !" -> "!", " ," -> ",", " ' " -> "'", " n't" -> "n't",
/// " 'm" -> "'m", " 's" -> "'s", " 've" -> "'ve", " 're" -> "'re", applied in that order to the
/// whole string (ref: PreTrainedTokenizerBase.clean_up_tokenization).
std::string clean_up_tokenization(std::string text);

/// The folder's tokenizer_config.json "clean_up_tokenization_spaces". Absent file or key: false,
/// the default of transformers >= 4.45. Throws FormatError when the key is not a boolean or the
/// file is not JSON.
bool clean_up_tokenization_spaces(const std::filesystem::path& model_dir);

}  // namespace xcaption
