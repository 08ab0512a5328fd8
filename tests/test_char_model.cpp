// The char model's helpers used by the demo: the classroom filter for samples, vocabularies in
// any order.
#include <gtest/gtest.h>

#include "char_model.hpp"

using namespace char_model;

namespace {
std::u32string u(const std::string& s) { return utf8_decode(s, "test"); }
std::string rot13(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = char('a' + (c - 'a' + 13) % 26);
    else if (c >= 'A' && c <= 'Z') c = char('A' + (c - 'A' + 13) % 26);
  }
  return s;
}
}  // namespace

TEST(CharModel, OffensiveSamplesAreRecognised) {
  // The words are written ROT13-encoded here too.
  EXPECT_TRUE(is_offensive(u(rot13("shpx"))));
  EXPECT_TRUE(is_offensive(u("The " + rot13("Fuvg") + "ty day")));  // a stem inside a word, any case
  EXPECT_TRUE(is_offensive(u("oh " + rot13("phz") + "\n")));        // a whole word
  EXPECT_FALSE(is_offensive(u("cumulus")));                          // ...but not inside another word
  EXPECT_FALSE(is_offensive(u("Kidanica")));
  EXPECT_FALSE(is_offensive(u("the gated recurrent unit")));
  EXPECT_FALSE(is_offensive(u("")));
}

TEST(CharModel, VocabularyKeepsTheFileOrder) {
  Vocab v = Vocab::from_chars({U'z', U'a', U'\n'}, "vocab");
  EXPECT_EQ(v.find(U'z'), 0);
  EXPECT_EQ(v.find(U'\n'), 2);
  EXPECT_EQ(v.find(U'q'), -1);
  EXPECT_THROW(Vocab::from_chars({U'a', U'a'}, "vocab"), tapegrad::ValueError);
  EXPECT_THROW(Vocab::from_chars({char32_t(0xD800)}, "vocab"), tapegrad::ValueError);
  EXPECT_THROW(Vocab::from_chars({}, "vocab"), tapegrad::ValueError);
}
